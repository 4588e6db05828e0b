"""Ratios of vaemath to its alternatives, and the speed targets, from bench JSON files.

Usage (from the repository root)::

    python benchmarks/ratios.py docs/benchmarks/gaussian.json [more.json ...] [--strict]

For every group (operation, library, mode, shape) it prints the vaemath median
and ``vaemath ÷ alternative`` for each alternative measured in the same run
(below 1: vaemath is faster). Then it checks :data:`TARGETS` and prints one line
per target and shape with PASS / FAIL (MISSING where the file lacks the
measurement); ``--strict`` exits with status 1 unless every target passes.

The input is what ``python -m pytest benchmarks --benchmark-only
--benchmark-json=FILE`` writes; the benchmarks label themselves through
``extra_info`` (see ``benchmarks/conftest.py``), so nothing here parses pytest
ids. ``docs/scripts/bench_table.py`` imports this file to put the same target
table on the Performance page.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[str, str, str, str]  # (op, library, mode, shape)

KL_SHAPES = ("64x32", "1024x64", "4096x1024")


@dataclass(frozen=True)
class Target:
    """``vaemath ÷ versus`` must satisfy ``relation limit`` at every shape."""

    op: str
    library: str
    mode: str
    versus: str
    relation: str  # "<=" or "<"
    limit: float
    shapes: tuple[str, ...]

    def holds(self, ratio: float) -> bool:
        return {"<=": operator.le, "<": operator.lt}[self.relation](ratio, self.limit)

    def describe(self) -> str:
        rel = "\N{LESS-THAN OR EQUAL TO}" if self.relation == "<=" else "<"
        times = "\N{MULTIPLICATION SIGN}"
        return f"{self.op} {self.mode} ({self.library}): {rel} {self.limit:g}{times} {self.versus}"


# The gaussian_kl speed targets (torch eager float32; NumPy float32).
TARGETS = (
    Target("gaussian_kl", "torch", "forward+backward", "naive", "<=", 1.5, KL_SHAPES),
    Target("gaussian_kl", "torch", "forward", "torch.distributions", "<", 1.0, KL_SHAPES),
    Target("gaussian_kl", "torch", "forward+backward", "torch.distributions", "<", 1.0, KL_SHAPES),
    Target("gaussian_kl", "numpy", "forward", "naive", "<=", 3.0, KL_SHAPES),
    Target(
        "mutual_information_gap",
        "numpy",
        "mixture",
        "dataset_decomposition",
        "<=",
        1.5,
        ("20000x10",),
    ),
    Target(
        "mutual_information_gap",
        "torch",
        "mixture",
        "dataset_decomposition",
        "<=",
        1.5,
        ("20000x10",),
    ),
)


def medians(data: dict[str, Any]) -> dict[Key, dict[str, float]]:
    """``{(op, library, mode, shape): {impl: median seconds}}`` of the tagged benchmarks."""
    out: dict[Key, dict[str, float]] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        if "impl" not in info:
            continue
        key = (str(info["op"]), str(info["library"]), str(info["mode"]), str(info["shape"]))
        out.setdefault(key, {})[str(info["impl"])] = float(bench["stats"]["median"])
    return out


def check_targets(
    found: dict[Key, dict[str, float]], targets: tuple[Target, ...] = TARGETS
) -> list[tuple[Target, str, float | None, str]]:
    """``[(target, shape, ratio or None, "PASS" | "FAIL" | "MISSING"), ...]``."""
    rows = []
    for target in targets:
        for shape in target.shapes:
            entry = found.get((target.op, target.library, target.mode, shape), {})
            if "vaemath" not in entry or target.versus not in entry:
                rows.append((target, shape, None, "MISSING"))
                continue
            ratio = entry["vaemath"] / entry[target.versus]
            rows.append((target, shape, ratio, "PASS" if target.holds(ratio) else "FAIL"))
    return rows


def _shape_key(shape: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in shape.split("x"))
    except ValueError:
        return (sys.maxsize,)


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def report(found: dict[Key, dict[str, float]]) -> str:
    lines = []
    for key in sorted(found, key=lambda k: (k[0], k[1], k[2], _shape_key(k[3]))):
        entry = found[key]
        ours = entry.get("vaemath")
        head = " ".join(key)
        if ours is None:
            lines.append(f"{head}: no vaemath row")
            continue
        ratios = ", ".join(
            f"/{name} {ours / t:.2f}x" for name, t in entry.items() if name != "vaemath"
        )
        lines.append(f"{head}: vaemath {_fmt_time(ours)}; {ratios or 'no alternative run'}")
    return "\n".join(lines)


def target_report(rows: list[tuple[Target, str, float | None, str]]) -> str:
    lines = []
    for target, shape, ratio, verdict in rows:
        shown = "-" if ratio is None else f"{ratio:.2f}x"
        lines.append(f"{verdict:<7} {target.describe()} at {shape}: {shown}")
    return "\n".join(lines)


def load(paths: list[Path]) -> dict[Key, dict[str, float]]:
    found: dict[Key, dict[str, float]] = {}
    for path in paths:
        for key, entry in medians(json.loads(path.read_text(encoding="utf-8"))).items():
            found.setdefault(key, {}).update(entry)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", type=Path)
    parser.add_argument("--strict", action="store_true", help="exit 1 unless every target passes")
    args = parser.parse_args(argv)
    found = load(args.json)
    print(report(found))
    rows = check_targets(found)
    print("\nSpeed targets (ratio = vaemath median / alternative median, same run):")
    print(target_report(rows))
    failed = sum(verdict != "PASS" for *_, verdict in rows)
    print(f"{len(rows) - failed} of {len(rows)} targets met")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
