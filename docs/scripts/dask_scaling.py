"""Tables for the dask page: graph sizes, and wall times on a local cluster against NumPy.

* Graph sizes (nothing computed): tasks in the graph of
  ``dataset_decomposition`` on dask arrays for N = 6,000 and 100,000 (D = 10)
  with dask's default chunks and with explicit row chunks, before and after
  ``dask.optimize``; and, for comparison, the tasks that the tile engine
  builds when it is called on dask arrays directly (one per cache tile).
* Wall times of ``dataset_decomposition`` (float64, D = 10, one sample per
  query, default chunks) in one NumPy process, on dask's threaded scheduler,
  and on a ``distributed.LocalCluster`` of 1 and 2 single-threaded worker
  processes on this machine, in distributed's default worker environment and
  without its ``MALLOC_TRIM_THRESHOLD_`` (inputs persisted on the workers
  first), ``REPEATS`` interleaved runs of each; with the largest relative
  difference of the three terms from the NumPy values (same seed, same
  samples). The load average of the machine is recorded with them: on a shared
  machine, rerun when it is idle. Every process runs single-threaded
  (``OMP_NUM_THREADS=1``, which torch's fused engine kernels follow too).

Writes ``docs/_generated/dask_scaling.rst``. Run from the repository root
(about 5 minutes on two idle cores)::

    python docs/scripts/dask_scaling.py
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
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
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]  # vaemath, _common

from _common import cpu_model, list_table  # noqa: E402

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
# (N, num_queries): a subset of queries at N = 100,000 (1 x 13 blocks of 8,192 rows),
# and every point at N = 16,384 (2 x 2 blocks).
TIMED = ((100_000, 1_000), (16_384, None))
# (workers, distributed's default worker environment with its malloc trim)
CLUSTERS = ((1, True), (2, True), (1, False), (2, False))
MALLOC_TRIM = "MALLOC_TRIM_THRESHOLD_"
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
    "median",
    "fastest",
    "speed-up over NumPy (medians)",
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


@contextlib.contextmanager
def worker_environ(malloc_trim: bool) -> Iterator[None]:
    """Start worker processes inside this with or without distributed's malloc trim.

    ``MALLOC_TRIM_THRESHOLD_=65536`` (distributed's default
    ``distributed.nanny.pre-spawn-environ``, to hand memory back to the system)
    also switches off glibc's dynamic mmap threshold: every temporary above
    128 KiB, such as a tile of the engine, is then mapped and page-faulted
    afresh. ``None`` in the configuration leaves the variable out; the nanny has
    also written it into this process's environment when it started an earlier
    cluster, and children inherit that, so it is taken out there too meanwhile.
    """
    if malloc_trim:
        yield
        return
    saved = os.environ.pop(MALLOC_TRIM, None)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{MALLOC_TRIM}": None}):
            yield
    finally:
        if saved is not None:
            os.environ[MALLOC_TRIM] = saved


def _cluster(stack: contextlib.ExitStack, workers: int, malloc_trim: bool) -> distributed.Client:
    with worker_environ(malloc_trim):
        cluster = stack.enter_context(
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # loopback, any free port (None binds 8787)
            )
        )
    return stack.enter_context(distributed.Client(cluster))


def cluster_label(workers: int, malloc_trim: bool) -> str:
    plural = "s" if workers > 1 else ""
    label = f"dask.distributed, {workers} worker{plural} x 1 thread"
    return label if malloc_trim else f"{label}, ``MALLOC_TRIM_THRESHOLD_`` unset"


def timing_rows(
    n: int, queries: int | None, repeats: int, clusters: tuple[tuple[int, bool], ...]
) -> list[list[str]]:
    """NumPy, the threaded scheduler and local clusters on one problem.

    The runs are interleaved (one of each per repeat, every cluster started
    beforehand), so that a change in the machine's load falls on all alike.
    """
    mu, logvar = encodings(n)
    mu_np, logvar_np = dask.compute(mu, logvar, scheduler="sync")
    local = (da.from_array(mu_np, chunks=mu.chunks), da.from_array(logvar_np, chunks=mu.chunks))
    with contextlib.ExitStack() as stack:
        runs = {
            "NumPy, one process": functools.partial(_numpy_run, mu_np, logvar_np, queries),
            f"dask threads scheduler ({os.cpu_count()} threads)": functools.partial(
                _dask_run, *local, queries, "threads"
            ),
        }
        for count, malloc_trim in clusters:
            client = _cluster(stack, count, malloc_trim)
            persisted = client.persist([mu, logvar])  # generated on the workers
            distributed.wait(persisted)
            _dask_run(*encodings(1_000), None, client)  # warm-up: workers import vaemath
            name = cluster_label(count, malloc_trim)
            runs[name] = functools.partial(_dask_run, *persisted, queries, client)
        times: dict[str, list[float]] = {name: [] for name in runs}
        results = {}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                results[name] = run()
                times[name].append(time.perf_counter() - start)
    label = f"{n:,}, " + ("every point" if queries is None else f"{queries:,} queries")
    expected = results["NumPy, one process"]
    reference = statistics.median(times["NumPy, one process"])
    rows = []
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rows.append(
            [
                label,
                name,
                f"{median:.2f} s",
                f"{min(seconds):.2f} s",
                f"{reference / median:.2f}",
                f"{_rel_diff(results[name], expected):.1e}",
            ]
        )
    return rows


def main(
    out_dir: Path = OUT,
    *,
    graph_sizes: tuple[int, ...] = GRAPH_SIZES,
    graph_chunks: tuple[int | str, ...] = GRAPH_CHUNKS,
    tile_engine_size: int | None = GRAPH_SIZES[0],
    timed: tuple[tuple[int, int | None], ...] = TIMED,
    repeats: int = REPEATS,
    clusters: tuple[tuple[int, bool], ...] = CLUSTERS,
) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    graphs = graph_rows(graph_sizes, graph_chunks, tile_engine_size)
    times = [row for n, q in timed for row in timing_rows(n, q, repeats, clusters)]
    load_after = os.getloadavg()[0]
    elapsed = time.perf_counter() - start
    graph_title = (
        f"Tasks in the graph of the four terms on dask arrays (D = {DIM}, one sample "
        "per point, inputs generated by ``dask.array.random``)"
    )
    time_title = (
        f"Wall time of ``dataset_decomposition`` (float64, D = {DIM}, one sample per "
        f"query, default chunks; {repeats} interleaved runs of each)"
    )
    lines = [
        ".. Generated by docs/scripts/dask_scaling.py; do not edit.",
        "",
        *list_table(graph_title, GRAPH_HEADER, graphs),
        ".. timing table (docs/dask.rst includes the two parts separately)",
        "",
        *list_table(time_title, TIME_HEADER, times),
        f"Measured on {os.cpu_count()} CPU cores ({cpu_model()}, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, NumPy "
        f"{np.__version__}, {_engine()}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}); "
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after the "
        f"runs. Script run time {elapsed:.0f} s.",
        "",
    ]
    path = out_dir / "dask_scaling.rst"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _engine() -> str:
    """Which kernels the NumPy blocks ran: torch's fused ones (single-threaded) or NumPy's."""
    try:
        import torch
    except ImportError:
        return "NumPy tile engine (torch not installed)"
    return f"fused kernels of torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


if __name__ == "__main__":
    print(main())
