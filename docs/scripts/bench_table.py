"""Run the benchmarks and turn their JSON files into the tables of the Performance page.

One command remeasures everything and rewrites the page's tables (run from the
repository root; a few minutes on two cores)::

    python docs/scripts/bench_table.py --run                 # all topics
    python docs/scripts/bench_table.py --run --only gaussian # one topic

For each topic it runs ``benchmarks/test_bench_<topic>.py`` under pytest-benchmark
(``OPENBLAS_NUM_THREADS=1``; torch's thread count is set in
``benchmarks/conftest.py``), writes ``docs/benchmarks/<topic>.json`` and a
``<topic>.txt`` note (the exact command and how long it took), then renders
``docs/_generated/performance_tables.rst`` (included by ``docs/performance.rst``)
and prints the ratios and speed targets of ``benchmarks/ratios.py``.

Without ``--run`` it only renders the committed JSON files (what
``docs/scripts/make_all.py`` does). Layout: one section per topic, one table per
(operation, library, mode), one row per shape; the columns are vaemath's median
and, for each alternative timed in the same run, ``vaemath ÷ alternative`` with
the alternative's median. The rows are found from each benchmark's
``extra_info`` (``op``, ``library``, ``mode``, ``shape``, ``impl``), never from
pytest ids. Files without ``extra_info`` get the older layout (one table per
benchmark group, ratios to the row matching ``--baseline``). Topics listed in
``TOPICS`` without a JSON file get a placeholder naming the command.

    python docs/scripts/bench_table.py some.json             # plain-text summary
    python docs/scripts/bench_table.py some.json --out table.rst
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "docs" / "benchmarks"
OUT = ROOT / "docs" / "_generated" / "performance_tables.rst"
RATIOS = ROOT / "benchmarks" / "ratios.py"
RUN_COMMAND = "python docs/scripts/bench_table.py --run"
# Environment of every benchmark process (NumPy / SciPy single-threaded).
BENCH_ENV = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
PYTEST_OPTIONS = (
    "--benchmark-only",
    "--benchmark-max-time=0.5",
    "--benchmark-warmup=on",
    "--benchmark-warmup-iterations=20",
    "--benchmark-columns=min,median,rounds",
    "-pno:cacheprovider",
    "-q",
)
COMMAND = (
    "OPENBLAS_NUM_THREADS=1 python -m pytest benchmarks/test_bench_{topic}.py \\\n"
    "    --benchmark-only --benchmark-json docs/benchmarks/{topic}.json"
)
# Topics the page expects (title by file stem); other JSON files are shown too.
TOPICS = {
    "gaussian": "Gaussian KL",
    "estimators": "MI / TC / dimension-wise KL estimators",
    "mmd": "MMD",
    "metrics": "Mutual Information Gap",
    "mixture": "Gaussian-mixture log-density",
    "discrete": "Bernoulli and categorical KL",
    "mmd_uniform": "MMD to a uniform box",
    "engine": "The estimators' tile engine",
    "dask": "dataset_decomposition on a dask cluster",
}
UNDERLINE = "-"
SUBLINE = "~"
TIMES = "\N{MULTIPLICATION SIGN}"
VERDICTS = {"PASS": "yes", "FAIL": "**no**", "MISSING": "not measured"}


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


def threads_line(data: dict[str, Any]) -> str:
    """The thread settings ``benchmarks/conftest.py`` recorded, or "" for older files."""
    bench = data.get("machine_info", {}).get("vaemath_bench")
    if not bench:
        return ""
    line = (
        f"Threads: ``torch.set_num_threads({bench.get('torch_threads')})``; NumPy with "
        f"``OPENBLAS_NUM_THREADS={bench.get('OPENBLAS_NUM_THREADS')}`` "
        f"(BLAS threads in use: {bench.get('blas_threads')}). "
        f"torch {bench.get('torch_version')}, NumPy {bench.get('numpy_version')}."
    )
    if bench.get("numpy_imported_first"):
        line += " NumPy was imported before the thread settings: they may not have applied."
    return line


def _load_ratios() -> ModuleType:
    """``benchmarks/ratios.py`` (the one definition of the speed targets)."""
    spec = importlib.util.spec_from_file_location("_vaemath_bench_ratios", RATIOS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _shape_key(shape: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in shape.split("x"))
    except ValueError:
        return (sys.maxsize,)


def _is_tagged(data: dict[str, Any]) -> bool:
    return any("impl" in (b.get("extra_info") or {}) for b in data["benchmarks"])


def pivot_tables(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One table per (op, library, mode) of the tagged benchmarks.

    Returns ``[{"op", "library", "mode", "alternatives": [impl, ...],
    "rows": [(shape, vaemath median or None, {impl: (median, vaemath / median)})]}]``
    in the order the benchmarks ran; rows sorted by shape, alternatives in the
    order first seen.
    """
    tables: dict[tuple[str, str, str], dict[str, Any]] = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {}
        if "impl" not in info:
            continue
        key = (str(info["op"]), str(info["library"]), str(info["mode"]))
        table = tables.setdefault(key, {"alternatives": [], "shapes": {}})
        impl = str(info["impl"])
        if impl != "vaemath" and impl not in table["alternatives"]:
            table["alternatives"].append(impl)
        table["shapes"].setdefault(str(info["shape"]), {})[impl] = float(bench["stats"]["median"])
        if "terms" in info:  # per-term costs (the engine's ns per term)
            table.setdefault("terms", {})[str(info["shape"])] = int(info["terms"])
    out = []
    for (op, library, mode), table in tables.items():
        rows = []
        for shape in sorted(table["shapes"], key=_shape_key):
            entry = table["shapes"][shape]
            ours = entry.get("vaemath")
            alts = {
                name: (t, ours / t if ours is not None else None)
                for name, t in entry.items()
                if name != "vaemath"
            }
            rows.append((shape, ours, alts))
        out.append(
            {
                "op": op,
                "library": library,
                "mode": mode,
                "alternatives": table["alternatives"],
                "rows": rows,
                "terms": table.get("terms", {}),
            }
        )
    return out


def _shape_cell(shape: str) -> str:
    return shape.replace("x", " \N{MULTIPLICATION SIGN} ")


def render_pivot(data: dict[str, Any]) -> str:
    lines = []
    for table in pivot_tables(data):
        title = f"``{table['op']}``, {table['library']}, {table['mode']}"
        lines += [
            f".. list-table:: {title}",
            "   :header-rows: 1",
            "",
            "   * - shape",
            "     - vaemath",
        ]
        lines += [f"     - vs ``{name}``" for name in table["alternatives"]]
        for shape, ours, alts in table["rows"]:
            lines += [
                f"   * - {_shape_cell(shape)}",
                f"     - {_fmt_time(ours) if ours is not None else '*not run*'}",
            ]
            for name in table["alternatives"]:
                if name not in alts:
                    lines.append("     - *not run*")
                    continue
                t, ratio = alts[name]
                shown = f"{ratio:.2f}{TIMES}" if ratio is not None else "\N{EM DASH}"
                lines.append(f"     - {shown} ({_fmt_time(t)})")
        lines.append("")
        for shape, ours, alts in table["rows"]:
            terms = table["terms"].get(shape)
            if terms:
                costs = [("vaemath", ours)] + [(name, t) for name, (t, _) in alts.items()]
                shown = "; ".join(
                    f"{name} {1e9 * t / terms:.3f} ns" for name, t in costs if t is not None
                )
                lines += [f"Per term at {_shape_cell(shape)} ({terms:,} terms): {shown}.", ""]
    return "\n".join(lines)


def render_targets(data: dict[str, Any]) -> str:
    """The speed targets of ``benchmarks/ratios.py`` that this file measures, or ""."""
    ratios = _load_ratios()
    found = ratios.medians(data)
    ops = {key[0] for key in found}
    rows = [row for row in ratios.check_targets(found) if row[0].op in ops]
    if not rows:
        return ""
    met = sum(verdict == "PASS" for *_, verdict in rows)
    lines = [
        "Speed targets",
        SUBLINE * len("Speed targets"),
        "",
        f"{met} of {len(rows)} met in this run (``python benchmarks/ratios.py`` prints the same "
        "check; the ratio is vaemath's median over the alternative's, same run).",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - target",
        "     - shape",
        "     - ratio",
        "     - met",
    ]
    for target, shape, ratio, verdict in rows:
        lines += [
            f"   * - ``{target.op}`` {target.mode} ({target.library}): "
            f"{target.describe().split(': ', 1)[1]}",
            f"     - {_shape_cell(shape)}",
            f"     - {'' if ratio is None else f'{ratio:.2f}{TIMES}'}",
            f"     - {VERDICTS[verdict]}",
        ]
    lines.append("")
    return "\n".join(lines)


def render_legacy(data: dict[str, Any], baseline: str = "vaemath") -> str:
    lines = []
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
                f"     - {ratio:.2f}{TIMES}",
            ]
            if naive is not None:
                lines.append(f"     - {naive[name]:.2f}{TIMES}")
        lines.append("")
    return "\n".join(lines)


def render(data: dict[str, Any], baseline: str = "vaemath") -> str:
    lines = [machine_line(data)]
    threads = threads_line(data)
    if threads:
        lines += ["", threads]
    lines.append("")
    if _is_tagged(data):
        lines.append(render_pivot(data))
        targets = render_targets(data)
        if targets:
            lines.append(targets)
    else:
        lines.append(render_legacy(data, baseline))
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
            f"      {RUN_COMMAND} --only {topic}",
            "",
            f"   which runs ``benchmarks/test_bench_{topic}.py``.",
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
    out.write_text(header + body.rstrip("\n") + "\n", encoding="utf-8")
    return out


def pytest_command(topic: str, bench_dir: Path = BENCH_DIR) -> list[str]:
    json_path = (bench_dir / f"{topic}.json").resolve()
    try:
        json_arg = str(json_path.relative_to(ROOT))
    except ValueError:
        json_arg = str(json_path)
    return [
        sys.executable,
        "-m",
        "pytest",
        f"benchmarks/test_bench_{topic}.py",
        *PYTEST_OPTIONS,
        f"--benchmark-json={json_arg}",
    ]


def _wrap_command(command: list[str], width: int = 80) -> str:
    """The command as shell text over continued lines (for the reST notes)."""
    lines = [
        " ".join(f"{k}={v}" for k, v in BENCH_ENV.items()),
        shlex.join(["python", *command[1:4]]),
    ]
    for arg in command[4:]:
        if len(lines[-1]) + len(arg) + 1 > width or len(lines) == 2:
            lines.append(shlex.quote(arg))
        else:
            lines[-1] += " " + shlex.quote(arg)
    return " \\\n      ".join(lines)


def write_note(topic: str, seconds: float, bench_dir: Path = BENCH_DIR) -> Path:
    """``bench_dir/<topic>.txt``: the command that made the JSON file and how long it took."""
    path = bench_dir / f"{topic}.txt"
    path.write_text(
        f"Measured by ``{RUN_COMMAND}`` in {seconds:.0f} s; this topic's command "
        "(from the repository root):\n\n.. code-block:: bash\n\n   "
        + _wrap_command(pytest_command(topic, bench_dir))
        + "\n",
        encoding="utf-8",
    )
    return path


def run(topics: list[str], bench_dir: Path = BENCH_DIR) -> dict[str, float]:
    """Run each topic's benchmarks into ``bench_dir/<topic>.json`` and write its note."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **BENCH_ENV}
    seconds = {}
    for topic in topics:
        command = pytest_command(topic, bench_dir)
        shown = (
            " ".join(f"{k}={v}" for k, v in BENCH_ENV.items())
            + " python "
            + shlex.join(command[1:])
        )
        print(f"== {topic}: {shown}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env, check=False)
        seconds[topic] = time.perf_counter() - start
        if proc.returncode != 0:
            msg = f"benchmarks for {topic!r} failed (exit {proc.returncode})"
            raise SystemExit(msg)
        write_note(topic, seconds[topic], bench_dir)
        print(f"   {topic}: {seconds[topic]:.0f} s", flush=True)
    return seconds


def summary(data: dict[str, Any], baseline: str = "vaemath") -> str:
    """Plain-text version of the ratio tables (for terminals and reports)."""
    if _is_tagged(data):
        ratios = _load_ratios()
        found = ratios.medians(data)
        ops = {key[0] for key in found}
        rows = [row for row in ratios.check_targets(found) if row[0].op in ops]
        text = ratios.report(found)
        return text + ("\n" + ratios.target_report(rows) if rows else "")
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
    parser.add_argument("--run", action="store_true", help="rerun the benchmarks first")
    parser.add_argument(
        "--only", action="append", choices=list(TOPICS), help="with --run: only this topic"
    )
    args = parser.parse_args()
    if args.run:
        begin = time.perf_counter()
        run(args.only or list(TOPICS))
        print(main(out=args.out or OUT, baseline=args.baseline))
        ratios_module = _load_ratios()
        paths = sorted(BENCH_DIR.glob("*.json"))
        ratios_module.main([str(p) for p in paths])
        print(f"total: {time.perf_counter() - begin:.0f} s")
    elif args.json is None:
        print(main(out=args.out or OUT, baseline=args.baseline))
    else:
        loaded = json.loads(args.json.read_text(encoding="utf-8"))
        print(summary(loaded, args.baseline))
        if args.out is not None:
            args.out.write_text(render(loaded, args.baseline) + "\n", encoding="utf-8")
