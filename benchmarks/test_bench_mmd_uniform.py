"""``mmd2_uniform_prior`` against what a user would otherwise write, float32.

Each group is one (library, B, D): a sample of size B in D dimensions against the
uniform distribution on ``[-1, 1]^D``, RBF kernel with bandwidth sqrt(D), unbiased
MMD². Implementations:

* ``vaemath``: ``mmd2_uniform_prior(x, -1.0, 1.0, bandwidth=...)``, the closed form
  (no prior samples);
* ``mmd2_samples``: draw B uniform samples (``torch.rand`` / ``Generator.random``)
  and call ``vaemath.mmd2(x, y, bandwidth=...)``, the InfoVAE way, drawing included;
* ``mmd2_samples_4x``: the same against 4B samples (a lower-variance estimate at
  about 4x the price of the prior block alone).
"""

from __future__ import annotations

import numpy as np
import pytest

import vaemath
from vaemath._mmd import mmd2_uniform_prior  # public: vaemath.mmd2_uniform_prior

SIZES = [256, 1024, 4096]
DIMS = [16, 128]
LIBRARIES = ["torch", "numpy"]
OP = "mmd2_uniform_prior"
IMPLS = ["vaemath", "mmd2_samples", "mmd2_samples_4x"]


def _data(library: str, size: int, dim: int):
    rng = np.random.default_rng(0)
    x = (0.5 * rng.standard_normal((size, dim))).astype(np.float32)
    if library == "torch":
        torch = pytest.importorskip("torch")
        return torch.from_numpy(x)
    return x


def _closed_form(bandwidth: float):
    def fn(x):
        return mmd2_uniform_prior(x, -1.0, 1.0, bandwidth=bandwidth)

    return fn


def _against_samples(library: str, bandwidth: float, factor: int):
    if library == "torch":
        import torch

        gen = torch.Generator().manual_seed(0)

        def fn_torch(x):
            y = 2.0 * torch.rand((factor * x.shape[0], x.shape[1]), generator=gen) - 1.0
            return vaemath.mmd2(x, y, bandwidth=bandwidth)

        return fn_torch
    rng = np.random.default_rng(0)

    def fn_numpy(x):
        y = 2.0 * rng.random((factor * x.shape[0], x.shape[1]), dtype=np.float32) - 1.0
        return vaemath.mmd2(x, y, bandwidth=bandwidth)

    return fn_numpy


def _make(impl: str, library: str, bandwidth: float):
    if impl == "vaemath":
        return _closed_form(bandwidth)
    return _against_samples(library, bandwidth, 4 if impl == "mmd2_samples_4x" else 1)


def _run(benchmark, fn, x, size):
    if size >= 4096:
        benchmark.pedantic(fn, args=(x,), rounds=3, warmup_rounds=1)
    else:
        benchmark(fn, x)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("B", SIZES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_mmd2_uniform_prior(benchmark, tag, library, B, D, impl):
    tag(OP, library, "forward", f"{B}x{D}", impl, heavy=B > 256)
    x = _data(library, B, D)
    _run(benchmark, _make(impl, library, float(np.sqrt(D))), x, B)


@pytest.mark.parametrize("library", LIBRARIES)
def test_alternatives_agree(library):
    """The closed form is what the sampled estimate scatters around (plain test, not timed).

    The mean of 10 sampled estimates (m = 4B each) against the closed form, within
    4 standard errors of that mean (fixed seeds).
    """
    x = _data(library, 128, 4)
    ours = float(_closed_form(2.0)(x))
    sampled = _against_samples(library, 2.0, 4)
    draws = np.array([float(sampled(x)) for _ in range(10)])
    se = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - ours) < 4 * se + 1e-6, (ours, draws.mean(), se)
