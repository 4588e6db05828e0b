"""Print each benchmark group's medians as ratios to a baseline.

Usage: ``python benchmarks/ratios.py results.json [--baseline naive]``
(``results.json`` from ``pytest benchmarks --benchmark-json=results.json``).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json")
    parser.add_argument("--baseline", default="naive")
    args = parser.parse_args()
    with open(args.json) as fh:
        data = json.load(fh)
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][bench["name"]] = bench["stats"]["median"]
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}")
    print(f"| group | candidate | median (µs) | / {args.baseline} | / vaemath |")
    print("|---|---|---:|---:|---:|")
    for group in sorted(groups):
        entries = groups[group]
        base = entries.get(args.baseline)
        ours = entries.get("vaemath")
        for name, median in sorted(entries.items(), key=lambda kv: kv[1]):
            r_base = f"{median / base:.2f}" if base else "-"
            r_ours = f"{median / ours:.2f}" if ours else "-"
            print(f"| {group} | {name} | {median * 1e6:.1f} | {r_base} | {r_ours} |")


if __name__ == "__main__":
    main()
