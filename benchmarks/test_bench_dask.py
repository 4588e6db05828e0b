"""``dataset_decomposition`` on a two-worker dask cluster against one NumPy process.

One group per size (float64, ``D = 10``, one sample per query, dask's default
chunks, which the dask path splits into blocks of 8,192 rows):

* ``vaemath``: the dask path computed on a ``distributed.LocalCluster`` of two
  single-threaded worker processes in distributed's default worker environment
  (encodings generated and persisted on the workers first, so only the
  decomposition is timed; the graph is rebuilt in every round, as it is part of
  the call);
* ``no malloc trim``: the same cluster without distributed's
  ``MALLOC_TRIM_THRESHOLD_=65536``, which switches off glibc's dynamic mmap
  threshold, so that every tile-sized temporary of the engine is mapped and
  page-faulted afresh;
* ``numpy``: the same call on the same encodings as NumPy arrays in this
  process (the tile engine, single-threaded).

Sizes: ``N = 100,000`` with ``num_queries=4,000`` (every query still against all
``N`` components; seconds per call, timed with ``--benchmark-only`` only) and
``N = 4,000`` with ``num_queries=1,000``, the smoke case of
``--benchmark-disable``. Timed by hand::

    python -m pytest benchmarks/test_bench_dask.py --benchmark-only \\
        --benchmark-json=dask.json
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import vaemath

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

# the worker environment, one home: the scaling study that measured it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "scripts"))
from dask_scaling import MALLOC_TRIM, worker_environ  # noqa: E402

DIM = 10
OP = "dataset_decomposition"
CASES = [
    pytest.param(4_000, 1_000, False, id="4000x10 q1000"),
    pytest.param(100_000, 4_000, True, id="100000x10 q4000"),
]
TERMS = ("mutual_information", "total_correlation", "dimensionwise_kl")


@contextlib.contextmanager
def _local_cluster(*, malloc_trim: bool) -> Iterator[distributed.Client]:
    """Two single-threaded worker processes on 127.0.0.1 (HTTP server on a free port)."""
    with worker_environ(malloc_trim):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",  # loopback, any free port (None binds 8787)
        )
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with _local_cluster(malloc_trim=True) as client:
        yield client


@pytest.fixture(scope="module")
def client_no_trim() -> Iterator[distributed.Client]:
    with _local_cluster(malloc_trim=False) as client:
        yield client


def _encodings(n: int) -> tuple[da.Array, da.Array]:
    rng = da.random.default_rng(0)
    mu = rng.standard_normal((n, DIM))
    return mu, rng.uniform(-3.0, -1.0, (n, DIM), chunks=mu.chunks)


def _on_cluster(client, mu, logvar, queries):
    terms = vaemath.dataset_decomposition(mu, logvar, num_queries=queries)
    return dask.compute(terms, scheduler=client)[0]


def _shape(n: int, queries: int) -> str:
    return f"{n}x{DIM} q{queries}"


def _time_on_cluster(benchmark, client, n, queries):
    persisted = client.persist(list(_encodings(n)))
    distributed.wait(persisted)
    _on_cluster(client, *persisted, queries)  # warm-up: the workers import vaemath
    benchmark.pedantic(_on_cluster, args=(client, *persisted, queries), rounds=3)


@pytest.mark.parametrize(("n", "queries", "heavy"), CASES)
def test_dask_two_workers(benchmark, tag, client, n, queries, heavy):
    tag(OP, "dask", "forward", _shape(n, queries), "vaemath", heavy=heavy, workers=2)
    _time_on_cluster(benchmark, client, n, queries)


@pytest.mark.parametrize(("n", "queries", "heavy"), CASES)
def test_dask_two_workers_no_malloc_trim(benchmark, tag, client_no_trim, n, queries, heavy):
    tag(OP, "dask", "forward", _shape(n, queries), "no malloc trim", heavy=heavy, workers=2)
    _time_on_cluster(benchmark, client_no_trim, n, queries)


@pytest.mark.parametrize(("n", "queries", "heavy"), CASES)
def test_numpy_one_process(benchmark, tag, n, queries, heavy):
    tag(OP, "dask", "forward", _shape(n, queries), "numpy", heavy=heavy)
    mu, logvar = dask.compute(*_encodings(n), scheduler="sync")
    benchmark.pedantic(
        vaemath.dataset_decomposition,
        args=(mu, logvar),
        kwargs={"num_queries": queries},
        rounds=3,
    )


def test_dask_matches_numpy(client):
    """The alternatives compute the same terms (plain test, not timed)."""
    encodings = _encodings(3_000)
    got = _on_cluster(client, *encodings, 500)
    mu, logvar = dask.compute(*encodings, scheduler="sync")
    expected = vaemath.dataset_decomposition(mu, logvar, num_queries=500)
    for name in TERMS:
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-10)


def test_no_malloc_trim_reaches_the_workers(client, client_no_trim):
    def variable():
        return os.environ.get(MALLOC_TRIM)

    assert None not in client.run(variable).values()
    assert set(client_no_trim.run(variable).values()) == {None}
