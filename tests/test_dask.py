"""``dataset_decomposition`` on dask arrays: lazy, a graph of blocks, the NumPy value.

The distributed tests run on a two-worker ``distributed.LocalCluster`` on the
loopback interface (worker processes, one thread each), started once for the
module. Its HTTP server takes a free loopback port: ``dashboard_address=None``
still binds 8787, and a second cluster (the docs example, another process)
would then warn. Values are compared with the NumPy path on the same seed: the
dask graph draws the same samples, so float64 agrees to rounding (1e-10
relative is asserted; the differences seen are ~1e-15).
"""

from __future__ import annotations

import doctest
import importlib.util
import math
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

import vaemath

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from vaemath._estimators import _dask  # noqa: E402

TERMS = ("mutual_information", "total_correlation", "dimensionwise_kl")
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    """A two-worker local cluster on 127.0.0.1 and its client, closed afterwards."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # loopback, any free port (None binds 8787)
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 200 .. 400 rows, so that small inputs make many blocks."""
    monkeypatch.setattr(_dask, "MIN_BLOCK_ROWS", 200)
    monkeypatch.setattr(_dask, "MAX_BLOCK_ROWS", 400)


def encodings(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.standard_normal((n, 1))  # correlated latents: a clear TC
    mu = codes + 0.5 * rng.standard_normal((n, d))
    return mu, rng.uniform(-3.0, -1.0, (n, d))


def chunked(x: np.ndarray, rows: int | str) -> da.Array:
    return da.from_array(x, chunks=(rows, -1) if rows != "auto" else "auto")


def task_count(terms: vaemath.ElboDecomposition) -> int:
    """Tasks of the graph of all four terms (unoptimised)."""
    stacked = da.stack([getattr(terms, f.name) for f in fields(terms)])
    return len(stacked.__dask_graph__())


def assert_matches_numpy(got, expected, *, rtol: float) -> None:
    for name in (*TERMS, "prior_dependence"):
        value, ref = getattr(got, name), getattr(expected, name)
        assert value.dtype == ref.dtype, name
        np.testing.assert_allclose(value, ref, rtol=rtol, atol=0.0, err_msg=name)


class TestDaskDecomposition:
    def test_lazy(self):
        computed = []

        def counting_get(graph, keys, **kwargs):
            computed.append(keys)
            return dask.get(graph, keys, **kwargs)

        mu, logvar = encodings(600, 3)
        with dask.config.set(scheduler=counting_get):
            terms = vaemath.dataset_decomposition(
                chunked(mu, 200), chunked(logvar, 200), 0.5, num_samples=2, num_queries=300
            )
            assert computed == []
            for name in (*TERMS, "prior_dependence"):
                value = getattr(terms, name)
                assert isinstance(value, da.Array), name
                assert value.shape == ()
                assert value.dtype == np.float64
            (values,) = dask.compute(terms)
        assert len(computed) == 1  # the four terms in one pass
        expected = vaemath.dataset_decomposition(mu, logvar, 0.5, num_samples=2, num_queries=300)
        assert_matches_numpy(values, expected, rtol=1e-10)

    @pytest.mark.parametrize(
        ("n", "rows", "blocks"),
        [
            pytest.param(6_000, 2048, 3, id="N=6000 chunks 2048"),
            pytest.param(24_000, 2048, 12, id="N=24000 chunks 2048"),
            pytest.param(24_000, 100, 12, id="tiny chunks merged"),
            pytest.param(40_000, "auto", 5, id="one chunk split"),
        ],
    )
    def test_task_count(self, n, rows, blocks):
        """One task per (query block, component block), the rest linear in the blocks."""
        mu, logvar = (chunked(x, rows) for x in encodings(n, 10))
        inputs = len(mu.__dask_graph__()) + len(logvar.__dask_graph__())
        terms = vaemath.dataset_decomposition(mu, logvar)
        layers = terms.mutual_information.__dask_graph__().layers
        block_layers = [
            v for k, v in layers.items() if k.startswith("dataset_decomposition-blocks")
        ]
        assert [len(layer) for layer in block_layers] == [blocks * blocks]
        # Measured: A B + 20 to 30 A, and a rechunk task per input chunk; the
        # tile engine run on dask arrays built one task per cache tile (84,000+
        # at N = 6,000).
        added = task_count(terms) - inputs
        assert added <= blocks * blocks + 30 * blocks + 2 * len(mu.chunks[0])

    @pytest.mark.parametrize(
        ("kwargs", "rows"),
        [
            pytest.param({}, 300, id="default"),
            pytest.param({"num_queries": 700}, 250, id="num_queries"),
            pytest.param({"num_samples": 3, "seed": 11}, 400, id="num_samples"),
            pytest.param({"num_samples": 2, "num_queries": 333}, "auto", id="both, one chunk"),
            pytest.param({"prior": "per point"}, 300, id="per-point prior"),
            pytest.param({"prior": "per dimension", "chunk_size": 16}, 300, id="(D,) prior"),
        ],
    )
    def test_distributed_equals_numpy(self, client, small_blocks, kwargs, rows):
        mu, logvar = encodings(2_000, 4, seed=1)
        kwargs = dict(kwargs)
        prior = kwargs.pop("prior", None)
        priors: tuple = (0.0, 0.0)
        if prior == "per point":
            priors = (np.linspace(-1.0, 1.0, 2_000)[:, None], np.full((2_000, 4), 0.3))
        elif prior == "per dimension":
            priors = (np.array([0.1, -0.2, 0.3, 0.0]), np.array([0.2, 0.0, -0.1, 0.5]))
        dask_priors = [p if isinstance(p, float) else da.from_array(p) for p in priors]
        terms = vaemath.dataset_decomposition(
            chunked(mu, rows), chunked(logvar, rows), *dask_priors, **kwargs
        )
        (got,) = dask.compute(terms, scheduler=client)
        expected = vaemath.dataset_decomposition(mu, logvar, *priors, **kwargs)
        assert_matches_numpy(got, expected, rtol=1e-10)

    def test_float32(self, client, small_blocks):
        mu, logvar = encodings(1_000, 3, seed=2)
        mu, logvar = mu.astype(np.float32), logvar.astype(np.float32)
        terms = vaemath.dataset_decomposition(chunked(mu, 250), chunked(logvar, 250))
        assert terms.total_correlation.dtype == np.float32
        (got,) = dask.compute(terms, scheduler=client)
        expected = vaemath.dataset_decomposition(mu, logvar)
        assert_matches_numpy(got, expected, rtol=1e-5)

    def test_nan_in_nan_out(self, small_blocks):
        mu, logvar = encodings(800, 2, seed=3)
        mu[437, 1] = np.nan  # one component: every query's log q(z) is NaN
        terms = vaemath.dataset_decomposition(chunked(mu, 200), chunked(logvar, 200))
        (got,) = dask.compute(terms, scheduler="sync")
        expected = vaemath.dataset_decomposition(mu, logvar)
        for name in TERMS:
            assert np.isnan(getattr(got, name)), name
            assert np.isnan(getattr(expected, name)), name

    def test_log_sum_exp_edges(self):
        """The block combination keeps the engine's non-finite cases."""
        inf = math.inf
        parts = np.array([[[-inf], [-inf]], [[-inf], [2.0]], [[inf], [1.0]], [[np.nan], [0.0]]])
        got = _dask._logsumexp(parts, axis=1)
        np.testing.assert_array_equal(got[:, 0], [-inf, 2.0, inf, np.nan])
        empty = _dask._block_log_sums(
            np.zeros((0, 2)), np.zeros((5, 2)), np.zeros((5, 2)), log_n=0.0, rows=None
        )
        assert empty.shape == (0, 1, 3)


class TestDaskBadInput:
    @pytest.mark.parametrize(
        "progress", [pytest.param(True, id="True"), pytest.param(print, id="callable")]
    )
    def test_progress(self, progress):
        mu = da.zeros((10, 2))
        with pytest.raises(ValueError, match="`progress` is not supported with dask"):
            vaemath.dataset_decomposition(mu, mu, progress=progress)

    def test_unknown_chunks(self):
        x = da.from_array(np.zeros((10, 2)), chunks=(5, 2))
        mu = x[x[:, 0] == 0]  # data-dependent selection: unknown row count
        with pytest.raises(ValueError, match="known chunk sizes"):
            vaemath.dataset_decomposition(mu, mu)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"num_queries": 11}, "num_queries", id="num_queries > N"),
            pytest.param({"num_samples": 0}, "num_samples", id="num_samples"),
            pytest.param({"chunk_size": 0}, "chunk_size", id="chunk_size"),
        ],
    )
    def test_options(self, kwargs, match):
        mu = da.zeros((10, 2))
        with pytest.raises(ValueError, match=match):
            vaemath.dataset_decomposition(mu, mu, **kwargs)


class TestDaskDocs:
    def test_page_example_runs(self):
        result = doctest.testfile(
            str(DOCS / "dask.rst"),
            module_relative=False,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
            verbose=False,
            report=True,
        )
        assert result.attempted >= 10
        assert result.failed == 0

    def test_scaling_script_quick_run(self, tmp_path):
        path = DOCS / "scripts" / "dask_scaling.py"
        spec = importlib.util.spec_from_file_location("_vaemath_docs_dask_scaling", path)
        assert spec is not None
        assert spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        out = script.main(
            tmp_path,
            graph_sizes=(3_000,),
            graph_chunks=("auto", 2_048),
            tile_engine_size=300,
            timed=((3_000, 300),),
            repeats=1,
            clusters=((1, True), (1, False)),
        )
        text = out.read_text(encoding="utf-8")
        assert text.count(".. list-table::") == 2
        assert ".. timing table" in text
        assert "2 x 2 of 2,048 rows" in text
        assert "dask.distributed, 1 worker x 1 thread" in text
        assert "1 worker x 1 thread, ``MALLOC_TRIM_THRESHOLD_`` unset" in text
