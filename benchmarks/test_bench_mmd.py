"""``vaemath.mmd2`` against the hand-written MMD of public VAE code, float32.

Each group is one (library, B, D): two samples of size B in D dimensions, RBF
kernel with bandwidth sqrt(D), unbiased MMD². Implementations:

* ``vaemath``: ``vaemath.mmd2(x, y, bandwidth=...)``;
* ``broadcast``: what public VAE code writes: ``exp(-((a[:, None] - b[None]) ** 2)
  .sum(-1) / (2 h²))`` for each of the three blocks, a ``(B, B, D)`` temporary
  each. Not run where that temporary would exceed 1 GiB (recorded as skipped);
* ``cdist``: the same with the squared distances from ``torch.cdist`` (NumPy:
  ``scipy.spatial.distance.cdist(..., "sqeuclidean")``, which computes in
  float64);
* ``floor``: the three blocks' ``(B, D) @ (D, B)`` products plus one in-place
  ``exp`` over each, nothing else: a lower bound for any Gram-trick
  implementation that computes every block in full. Each product allocates its
  ``(B, B)`` result, as user code would;
* ``floor_preallocated``: the same into one preallocated ``(B, B)`` buffer
  (``out=``): the strictest floor.
"""

from __future__ import annotations

import numpy as np
import pytest

import vaemath

SIZES = [256, 1024, 4096]
DIMS = [16, 128]
LIBRARIES = ["torch", "numpy"]
BROADCAST_MAX_BYTES = 2**30
OP = "mmd2"


def _data(library: str, size: int, dim: int, scale: float = 1.0):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((size, dim), dtype=np.float32) * np.float32(scale)
    y = (rng.standard_normal((size, dim), dtype=np.float32) + np.float32(0.1)) * np.float32(scale)
    if library == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(x), torch.from_numpy(y)
    return x, y


def _unbiased(kxx, kyy, kxy, trace):
    n = kxx.shape[0]
    return (kxx.sum() - trace(kxx) + kyy.sum() - trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()


def _broadcast(library: str, bandwidth: float):
    scale = -0.5 / bandwidth**2
    if library == "torch":
        import torch

        def block(a, b):
            return torch.exp(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) * scale)

        def trace(k):
            return k.diagonal().sum()

    else:

        def block(a, b):
            return np.exp(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) * scale)

        trace = np.trace

    def mmd(x, y):
        return _unbiased(block(x, x), block(y, y), block(x, y), trace)

    return mmd


def _cdist(library: str, bandwidth: float):
    scale = -0.5 / bandwidth**2
    if library == "torch":
        import torch

        def block(a, b):
            return torch.exp(torch.cdist(a, b) ** 2 * scale)

        def trace(k):
            return k.diagonal().sum()

    else:
        distance = pytest.importorskip("scipy.spatial.distance")

        def block(a, b):
            return np.exp(distance.cdist(a, b, "sqeuclidean") * scale)

        trace = np.trace

    def mmd(x, y):
        return _unbiased(block(x, x), block(y, y), block(x, y), trace)

    return mmd


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


def _run(benchmark, fn, x, y, size, slow=False):
    if slow and size >= 4096:
        benchmark.pedantic(fn, args=(x, y), rounds=2, warmup_rounds=0)
    elif slow and size >= 1024:
        benchmark.pedantic(fn, args=(x, y), rounds=3, warmup_rounds=1)
    elif size >= 4096:
        benchmark.pedantic(fn, args=(x, y), rounds=5, warmup_rounds=1)
    else:
        benchmark(fn, x, y)


IMPLS = ["vaemath", "broadcast", "cdist", "floor", "floor_preallocated"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("B", SIZES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_mmd2(benchmark, tag, library, B, D, impl):
    tag(OP, library, "forward", f"{B}x{D}", impl, heavy=B > 256)
    bandwidth = float(np.sqrt(D))
    if impl == "vaemath":
        x, y = _data(library, B, D)
        _run(benchmark, lambda a, b: vaemath.mmd2(a, b, bandwidth=bandwidth), x, y, B)
    elif impl in ("broadcast", "cdist"):
        if impl == "broadcast" and B * B * D * 4 > BROADCAST_MAX_BYTES:
            pytest.skip("not runnable: (B, B, D) float32 temporary over 1 GiB (8 GiB at 4096x128)")
        x, y = _data(library, B, D)
        make = _broadcast if impl == "broadcast" else _cdist
        _run(benchmark, make(library, bandwidth), x, y, B, slow=impl == "broadcast")
    else:
        # Scaled by D^-1/2 so that exp(x @ y.T) cannot overflow.
        x, y = _data(library, B, D, scale=D**-0.5)
        fn = _floor(library) if impl == "floor" else _floor_preallocated(library, B)
        _run(benchmark, fn, x, y, B)


@pytest.mark.parametrize("library", LIBRARIES)
def test_alternatives_agree(library):
    """The timed implementations compute the same MMD² (plain test, not timed)."""
    x, y = _data(library, 64, 16)
    ours = float(vaemath.mmd2(x, y, bandwidth=4.0))
    for make in (_broadcast, _cdist):
        assert float(make(library, 4.0)(x, y)) == pytest.approx(ours, rel=1e-3, abs=1e-6)
