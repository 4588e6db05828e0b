"""Tables for the dask page: graph sizes, and wall times on a local cluster against NumPy.

* Graph sizes (nothing computed): tasks in the graph of
  ``dataset_decomposition`` on dask arrays for N = 6,000 and 100,000 (D = 10)
  with dask's default chunks and with explicit row chunks, before and after
  ``dask.optimize``; and, for comparison, the tasks that the tile engine
  builds when it is called on dask arrays directly (one per cache tile).
* Wall times of ``dataset_decomposition`` (float64, D = 10, one sample per
  query, default chunks) in one NumPy process, on dask's threaded scheduler,
  and on a ``distributed.LocalCluster`` of 1 and 2 single-threaded worker
  processes on this machine (inputs persisted on the workers first), median of
  ``REPEATS``; with the largest relative difference of the three terms from the
  NumPy values (same seed, same samples).

Writes ``docs/_generated/dask_scaling.rst``. Run from the repository root
(about 4 minutes on two cores)::

    python docs/scripts/dask_scaling.py
"""

from __future__ import annotations

import functools
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
import distributed  # noqa: E402
import numpy as np  # noqa: E402
from dask.highlevelgraph import HighLevelGraph  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import vaemath  # noqa: E402
from vaemath._estimators import _dask, _tiles  # noqa: E402
from vaemath._estimators._dataset import sample_queries  # noqa: E402
from vaemath._estimators._decomposition import decompose  # noqa: E402
from vaemath._estimators._weights import LogWeights  # noqa: E402
from vaemath._gaussian import log_density  # noqa: E402
from vaemath._lib._compat import array_namespace  # noqa: E402

OUT = ROOT / "docs" / "_generated"
DIM = 10
GRAPH_SIZES = (6_000, 100_000)
GRAPH_CHUNKS = ("auto", 2_048, 10_000)
# (N, num_queries): a subset of queries at N = 100,000, and every point at N = 20,000.
TIMED = ((100_000, 5_000), (20_000, None))
REPEATS = 3
TERMS = ("mutual_information", "total_correlation", "dimensionwise_kl")
GRAPH_HEADER = [
    "N",
    "row chunks of the input",
    "blocks",
    "tasks",
    "after dask.optimize",
    "the inputs' own",
    "graph built in",
]
TIME_HEADER = [
    "N, queries",
    "run on",
    "time",
    "speed-up over NumPy",
    "largest relative difference of the terms from NumPy",
]


def encodings(n: int, chunks: int | str = "auto") -> tuple[da.Array, da.Array]:
    """Lazy ``(N, D)`` encodings, generated where they are computed."""
    rng = da.random.default_rng(0)
    mu = rng.standard_normal((n, DIM), chunks=chunks if chunks == "auto" else (chunks, -1))
    logvar = rng.uniform(-3.0, -1.0, (n, DIM), chunks=mu.chunks)
    return mu, logvar


def task_count(*arrays: da.Array) -> int:
    """Tasks in the merged (unoptimised) graph of ``arrays``."""
    return len(HighLevelGraph.merge(*(a.__dask_graph__() for a in arrays)))


def term_tasks(terms: vaemath.ElboDecomposition) -> tuple[int, int]:
    """Tasks of the graph of the four terms, unoptimised and after ``dask.optimize``."""
    stacked = da.stack([getattr(terms, f.name) for f in fields(terms)])
    (optimised,) = dask.optimize(stacked)
    return len(stacked.__dask_graph__()), len(optimised.__dask_graph__())


def tile_engine_terms(mu: da.Array, logvar: da.Array) -> vaemath.ElboDecomposition:
    """The NumPy path's computation (sample, tile engine, decompose) run on dask arrays.

    What ``dataset_decomposition`` built for dask arrays before it had a path of its
    own: every cache tile of the engine becomes tasks of the graph.
    """
    xp = array_namespace(mu)
    n = int(mu.shape[0])
    drawn = sample_queries(mu, logvar, num_samples=1, num_queries=None, seed=0, xp=xp)
    lq, lqd, _ = _tiles.forward(drawn.z, mu, logvar, LogWeights(-math.log(n)), xp=xp)
    log_qzx = xp.sum(log_density(drawn.z, drawn.mu, drawn.logvar, xp=xp), axis=-1)
    zero = xp.zeros((), dtype=mu.dtype)
    log_pz = xp.sum(log_density(drawn.z, zero, zero, xp=xp), axis=-1)
    return decompose(log_qzx, log_pz, lq, lqd, xp=xp)


def graph_rows(
    sizes: tuple[int, ...], chunks: tuple[int | str, ...], tile_engine_size: int | None
) -> list[list[str]]:
    cases = [(n, c, False) for n in sizes for c in chunks]
    if tile_engine_size is not None:
        cases.append((tile_engine_size, "auto", True))
    rows = []
    for n, chunk, engine in cases:
        mu, logvar = encodings(n, chunk)
        start = time.perf_counter()
        if engine:
            terms = tile_engine_terms(mu, logvar)
        else:
            terms = vaemath.dataset_decomposition(mu, logvar)
        built = time.perf_counter() - start
        tasks, optimised = term_tasks(terms)
        block = _dask._block_rows(mu.chunks[0]) or max(mu.chunks[0])
        blocks = math.ceil(n / block)
        rows.append(
            [
                f"{n:,}",
                "dask default (``auto``)" if chunk == "auto" else f"{chunk:,} rows",
                "the tile engine on dask arrays: tasks per cache tile"
                if engine
                else f"{blocks} x {blocks} of {block:,} rows",
                f"{tasks:,}",
                f"{optimised:,}",
                f"{task_count(mu, logvar):,}",
                f"{built:.2f} s",
            ]
        )
    return rows


def _median_time(run, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _rel_diff(got, expected) -> float:
    return max(
        abs(float(getattr(got, t)) - float(getattr(expected, t))) / abs(float(getattr(expected, t)))
        for t in TERMS
    )


def _numpy_run(mu: np.ndarray, logvar: np.ndarray, queries: int | None):
    return vaemath.dataset_decomposition(mu, logvar, num_queries=queries)


def _dask_run(mu: da.Array, logvar: da.Array, queries: int | None, scheduler):
    terms = vaemath.dataset_decomposition(mu, logvar, num_queries=queries)
    return dask.compute(terms, scheduler=scheduler)[0]


def timing_rows(
    n: int, queries: int | None, repeats: int, workers: tuple[int, ...]
) -> list[list[str]]:
    """NumPy, the threaded scheduler and local clusters on one problem."""
    mu, logvar = encodings(n)
    mu_np, logvar_np = dask.compute(mu, logvar, scheduler="sync")
    label = f"{n:,}, " + ("every point" if queries is None else f"{queries:,} queries")
    numpy_time, expected = _median_time(
        functools.partial(_numpy_run, mu_np, logvar_np, queries), repeats
    )
    rows = [[label, "NumPy, one process", f"{numpy_time:.2f} s", "1", "0 (reference)"]]

    def row(run_on: str, seconds: float, got) -> list[str]:
        return [
            label,
            run_on,
            f"{seconds:.2f} s",
            f"{numpy_time / seconds:.2f}",
            f"{_rel_diff(got, expected):.1e}",
        ]

    local = (da.from_array(mu_np, chunks=mu.chunks), da.from_array(logvar_np, chunks=mu.chunks))
    seconds, got = _median_time(functools.partial(_dask_run, *local, queries, "threads"), repeats)
    rows.append(row(f"dask threads scheduler ({os.cpu_count()} threads)", seconds, got))
    for count in workers:
        with (
            distributed.LocalCluster(
                n_workers=count,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # loopback, any free port (None binds 8787)
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            persisted = client.persist([mu, logvar])  # generated on the workers
            distributed.wait(persisted)
            _dask_run(*encodings(1_000), None, client)  # warm-up: workers import vaemath
            run = functools.partial(_dask_run, *persisted, queries, client)
            seconds, got = _median_time(run, repeats)
        plural = "s" if count > 1 else ""
        rows.append(row(f"dask.distributed, {count} worker{plural} x 1 thread", seconds, got))
    return rows


def list_table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return [*lines, ""]


def main(
    out_dir: Path = OUT,
    *,
    graph_sizes: tuple[int, ...] = GRAPH_SIZES,
    graph_chunks: tuple[int | str, ...] = GRAPH_CHUNKS,
    tile_engine_size: int | None = GRAPH_SIZES[0],
    timed: tuple[tuple[int, int | None], ...] = TIMED,
    repeats: int = REPEATS,
    workers: tuple[int, ...] = (1, 2),
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    graphs = graph_rows(graph_sizes, graph_chunks, tile_engine_size)
    times = [row for n, q in timed for row in timing_rows(n, q, repeats, workers)]
    load_after = os.getloadavg()[0]
    elapsed = time.perf_counter() - start
    graph_title = (
        f"Tasks in the graph of the four terms on dask arrays (D = {DIM}, one sample "
        "per point, inputs generated by ``dask.array.random``)"
    )
    time_title = (
        f"Wall time of ``dataset_decomposition`` (float64, D = {DIM}, one sample per "
        f"query, default chunks; median of {repeats})"
    )
    lines = [
        ".. Generated by docs/scripts/dask_scaling.py; do not edit.",
        "",
        *list_table(graph_title, GRAPH_HEADER, graphs),
        ".. timing table (docs/dask.rst includes the two parts separately)",
        "",
        *list_table(time_title, TIME_HEADER, times),
        f"Measured on {os.cpu_count()} CPU cores ({platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, NumPy "
        f"{np.__version__}, dask {dask.__version__}, distributed {distributed.__version__}); "
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after the "
        f"runs. Script run time {elapsed:.0f} s.",
        "",
    ]
    path = out_dir / "dask_scaling.rst"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(main())
