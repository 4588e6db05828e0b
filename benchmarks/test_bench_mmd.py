"""Speed of ``vaemath.mmd2`` against the (B, B, D) expansion and the floor.

Run: ``python -m pytest benchmarks/test_bench_mmd.py --benchmark-only
--benchmark-group-by=param:B,param:D,param:library --benchmark-columns=min,median``
(prefix ``OPENBLAS_NUM_THREADS=1`` to time NumPy single-threaded).

Per (library, B, D) group, three entries, all computing an RBF MMD² of two
float32 samples of size B (bandwidth sqrt(D), unbiased where applicable):

* ``vaemath``: ``vaemath.mmd2(x, y, bandwidth=...)``.
* ``expansion``: what public VAE code writes: ``(x[:, None] - y[None]) ** 2``
  summed over D for each of the three blocks. Not runnable at B = 4096,
  D = 128 (8 GiB per temporary): recorded as skipped.
* ``floor``: the three Gram blocks' (B, D) x (D, B) products plus one
  in-place ``exp`` over each block's B^2 entries, and nothing else (no norms,
  no sums): a lower bound for any Gram-trick implementation that computes
  every block in full. Each product allocates its (B, B) result, as a
  user's code would.
* ``floor_preallocated``: the same into one preallocated (B, B) buffer
  (``out=``), which removes the allocation / page-fault cost of the large
  results: the strictest floor.
"""

from __future__ import annotations

import numpy as np
import pytest

import vaemath

SIZES = [256, 1024, 4096]
DIMS = [16, 128]
LIBRARIES = ["torch", "numpy"]


def _data(library: str, size: int, dim: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, dim), dtype=np.float32)
    y = rng.standard_normal((size, dim), dtype=np.float32) + 0.1
    if library == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(x), torch.from_numpy(y)
    return x, y


def _scaled(library: str, size: int, dim: int):
    """The floor's inputs, scaled by D^-1/2 so that exp(x @ y.T) cannot overflow."""
    x, y = _data(library, size, dim)
    return x * dim**-0.5, y * dim**-0.5


def _expansion(library: str, bandwidth: float):
    scale = -0.5 / bandwidth**2
    if library == "torch":
        import torch

        def block(a, b):
            return torch.exp(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) * scale)

        def mmd(x, y):
            n = x.shape[0]
            kxx, kyy, kxy = block(x, x), block(y, y), block(x, y)
            return (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (
                n * (n - 1)
            ) - 2 * kxy.mean()

        return mmd

    def block_np(a, b):
        return np.exp(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) * scale)

    def mmd_np(x, y):
        n = x.shape[0]
        kxx, kyy, kxy = block_np(x, x), block_np(y, y), block_np(x, y)
        return (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (
            n * (n - 1)
        ) - 2 * kxy.mean()

    return mmd_np


def _floor(library: str):
    if library == "torch":

        def floor(x, y):
            for a, b in ((x, x), (y, y), (x, y)):
                (a @ b.T).exp_()

        return floor

    def floor_np(x, y):
        for a, b in ((x, x), (y, y), (x, y)):
            g = a @ b.T
            np.exp(g, out=g)

    return floor_np


def _floor_preallocated(library: str, size: int):
    if library == "torch":
        import torch

        buf = torch.empty((size, size), dtype=torch.float32)

        def floor(x, y):
            for a, b in ((x, x), (y, y), (x, y)):
                torch.mm(a, b.T, out=buf)
                buf.exp_()

        return floor

    buf_np = np.empty((size, size), dtype=np.float32)

    def floor_np(x, y):
        for a, b in ((x, x), (y, y), (x, y)):
            np.matmul(a, b.T, out=buf_np)
            np.exp(buf_np, out=buf_np)

    return floor_np


def _run(benchmark, fn, x, y, size):
    if size >= 4096:
        benchmark.pedantic(fn, args=(x, y), rounds=5, warmup_rounds=1)
    else:
        benchmark(fn, x, y)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("B", SIZES)
class TestBenchMMD2:
    def test_vaemath(self, benchmark, library, B, D):
        x, y = _data(library, B, D)
        bandwidth = float(np.sqrt(D))
        _run(benchmark, lambda a, b: vaemath.mmd2(a, b, bandwidth=bandwidth), x, y, B)

    def test_expansion(self, benchmark, library, B, D):
        if B * B * D * 4 > 2**30:
            pytest.skip("not runnable: (B, B, D) float32 temporary over 1 GiB (8 GiB at 4096x128)")
        x, y = _data(library, B, D)
        fn = _expansion(library, float(np.sqrt(D)))
        if B >= 4096:
            benchmark.pedantic(fn, args=(x, y), rounds=2, warmup_rounds=0)
        elif B >= 1024:
            benchmark.pedantic(fn, args=(x, y), rounds=3, warmup_rounds=1)
        else:
            benchmark(fn, x, y)

    def test_floor(self, benchmark, library, B, D):
        x, y = _scaled(library, B, D)
        _run(benchmark, _floor(library), x, y, B)

    def test_floor_preallocated(self, benchmark, library, B, D):
        x, y = _scaled(library, B, D)
        _run(benchmark, _floor_preallocated(library, B), x, y, B)
