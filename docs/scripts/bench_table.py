"""Turn pytest-benchmark JSON files into the ratio tables of the Performance page.

Input: one JSON file per benchmark topic, committed under ``docs/benchmarks/``,
written by::

    OPENBLAS_NUM_THREADS=1 python -m pytest benchmarks/test_bench_<topic>.py \\
        --benchmark-only --benchmark-json docs/benchmarks/<topic>.json

optionally with a ``docs/benchmarks/<topic>.txt`` next to it: free text (reST)
saying on which machine and with which exact command the file was made; it is
printed above the tables. Output: ``docs/_generated/performance_tables.rst``
(included by ``docs/performance.rst``), one section per topic, one table per
benchmark group, each row a benchmark with its median time and its ratio to the
group's baseline (the row whose name matches ``--baseline``, by default the
vaemath row; the fastest row if none matches). Topics listed in ``TOPICS``
without a JSON file get a placeholder that names the command that fills them.

Run from the repository root::

    python docs/scripts/bench_table.py
    python docs/scripts/bench_table.py some.json --out table.rst   # one file
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "docs" / "benchmarks"
OUT = ROOT / "docs" / "_generated" / "performance_tables.rst"
COMMAND = (
    "OPENBLAS_NUM_THREADS=1 python -m pytest benchmarks/test_bench_{topic}.py \\\n"
    "    --benchmark-only --benchmark-json docs/benchmarks/{topic}.json"
)
# Topics the page expects (title by file stem); other JSON files are shown too.
TOPICS = {
    "gaussian": "Gaussian KL",
    "estimators": "MI / TC / dimension-wise KL estimators",
    "mmd": "MMD",
}
UNDERLINE = "-"


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    raise AssertionError  # pragma: no cover


def _row_name(bench: dict[str, Any]) -> str:
    """The benchmark's test name with its parameters, e.g. ``test_kl[torch-64x32]``."""
    return str(bench.get("name", bench.get("fullname", "?")))


def ratio_tables(data: dict[str, Any], baseline: str = "vaemath") -> list[dict[str, Any]]:
    """Group the benchmarks and compute each one's median-time ratio to the baseline.

    Returns a list of ``{"group", "baseline", "rows": [(name, median_s, ratio), ...],
    "naive": {name: ratio to the row named "naive"} or None}``, rows sorted by median.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for bench in data["benchmarks"]:
        groups.setdefault(str(bench.get("group") or "(no group)"), []).append(bench)
    pattern = re.compile(baseline)
    tables = []
    for group, benches in groups.items():
        medians = {_row_name(b): float(b["stats"]["median"]) for b in benches}
        matches = [name for name in medians if pattern.search(name)]
        base = matches[0] if matches else min(medians, key=medians.__getitem__)
        rows = sorted(
            ((name, t, t / medians[base]) for name, t in medians.items()), key=lambda r: r[1]
        )
        naive = (
            {name: t / medians["naive"] for name, t in medians.items()}
            if "naive" in medians and base != "naive"
            else None
        )
        tables.append({"group": group, "baseline": base, "rows": rows, "naive": naive})
    return tables


def machine_line(data: dict[str, Any]) -> str:
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {})
    parts = [
        str(cpu.get("brand_raw") or info.get("processor") or info.get("machine") or "?"),
        f"{cpu.get('count', '?')} logical CPUs",
        f"{info.get('system', '?')} {info.get('release', '')}".strip(),
        f"Python {info.get('python_version', '?')}",
    ]
    commit = data.get("commit_info", {})
    when = str(data.get("datetime", "?"))[:16].replace("T", " ")  # to the minute
    line = "Machine: " + ", ".join(parts) + f". Run at {when}"
    if commit.get("id") and commit["id"] != "unversioned":
        line += f", commit ``{commit['id'][:10]}``" + (" (dirty)" if commit.get("dirty") else "")
    return line + "."


def render(data: dict[str, Any], baseline: str = "vaemath") -> str:
    lines = [machine_line(data), ""]
    times = "\N{MULTIPLICATION SIGN}"
    for table in ratio_tables(data, baseline):
        naive = table["naive"]
        lines += [
            f".. list-table:: {table['group']}",
            "   :header-rows: 1",
            "",
            "   * - benchmark",
            "     - median",
            f"     - time \N{DIVISION SIGN} ``{table['baseline']}``",
        ]
        if naive is not None:
            lines.append("     - time \N{DIVISION SIGN} ``naive``")
        for name, median, ratio in table["rows"]:
            lines += [
                f"   * - ``{name}``",
                f"     - {_fmt_time(median)}",
                f"     - {ratio:.2f}{times}",
            ]
            if naive is not None:
                lines.append(f"     - {naive[name]:.2f}{times}")
        lines.append("")
    return "\n".join(lines)


def render_topic(topic: str, bench_dir: Path, baseline: str) -> str:
    title = TOPICS.get(topic, topic.replace("_", " "))
    lines = [title, UNDERLINE * len(title), ""]
    json_path = bench_dir / f"{topic}.json"
    note = bench_dir / f"{topic}.txt"
    if not json_path.exists():
        lines += [
            ".. note::",
            "",
            "   Not measured yet. This table is filled by running, from the repository root,",
            "",
            "   .. code-block:: bash",
            "",
            *(f"      {line}" for line in COMMAND.format(topic=topic).splitlines()),
            "      python docs/scripts/bench_table.py",
            "",
        ]
        return "\n".join(lines)
    if note.exists():
        lines += [note.read_text(encoding="utf-8").strip(), ""]
    else:
        command = [f"   {line}" for line in COMMAND.format(topic=topic).splitlines()]
        lines += ["Command:", "", ".. code-block:: bash", "", *command, ""]
    data = json.loads(json_path.read_text(encoding="utf-8"))
    lines.append(render(data, baseline))
    return "\n".join(lines)


def main(bench_dir: Path = BENCH_DIR, out: Path = OUT, baseline: str = "vaemath") -> Path:
    found = sorted(p.stem for p in bench_dir.glob("*.json")) if bench_dir.exists() else []
    topics = list(TOPICS) + [t for t in found if t not in TOPICS]
    header = (
        ".. Generated by docs/scripts/bench_table.py from docs/benchmarks/*.json; do not edit.\n\n"
    )
    body = "\n\n".join(render_topic(t, bench_dir, baseline) for t in topics)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + body + "\n", encoding="utf-8")
    return out


def summary(data: dict[str, Any], baseline: str = "vaemath") -> str:
    """Plain-text version of the ratio tables (for terminals and reports)."""
    out = []
    for table in ratio_tables(data, baseline):
        out.append(f"{table['group']}  (baseline {table['baseline']})")
        width = max(len(r[0]) for r in table["rows"])
        out += [f"  {n:<{width}}  {_fmt_time(t):>10}  {r:6.2f}x" for n, t, r in table["rows"]]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", type=Path, help="one pytest-benchmark JSON file")
    parser.add_argument("--out", type=Path, default=None, help="where to write the reST")
    parser.add_argument("--baseline", default="vaemath", help="regex naming the baseline row")
    args = parser.parse_args()
    if args.json is None:
        print(main(out=args.out or OUT, baseline=args.baseline))
    else:
        loaded = json.loads(args.json.read_text(encoding="utf-8"))
        print(summary(loaded, args.baseline))
        if args.out is not None:
            args.out.write_text(render(loaded, args.baseline) + "\n", encoding="utf-8")
