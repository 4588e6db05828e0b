"""gaussian_kl against the alternatives, eager and compiled, torch and NumPy.

Groups are ``<library>-<shape>``; inside each: ``vaemath`` (gaussian_kl),
``naive`` (the hand-written ``0.5 * (mu**2 + exp(logvar) - 1 - logvar)``),
``torch.distributions`` (``kl_divergence(Normal, Normal(0, 1))``, torch only)
and ``floor`` (one elementwise op reading two arrays and writing one: the
memory-bound floor). The ``compiled`` groups compare the two expressions inside
a ``torch.compile``-d loss (the KL summed, as a loss would).
"""

from __future__ import annotations

import numpy as np
import pytest

from vaemath import gaussian_kl

torch = pytest.importorskip("torch")

SHAPES = [(64, 32), (1024, 64), (4096, 1024)]


def _inputs(shape, library):
    gen = np.random.default_rng(0)
    mu = gen.standard_normal(shape).astype(np.float32)
    logvar = (0.5 * gen.standard_normal(shape)).astype(np.float32)
    if library == "torch":
        return torch.from_numpy(mu), torch.from_numpy(logvar)
    return mu, logvar


def _naive_torch(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar)


def _naive_numpy(mu, logvar):
    return 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)


def _torch_distributions(mu, logvar):
    from torch.distributions import Normal, kl_divergence

    return kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))


CANDIDATES = {
    "torch": {
        "vaemath": gaussian_kl,
        "naive": _naive_torch,
        "torch.distributions": _torch_distributions,
        "floor": torch.add,
    },
    "numpy": {"vaemath": gaussian_kl, "naive": _naive_numpy, "floor": np.add},
}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    ("library", "name"),
    [(lib, name) for lib, fns in CANDIDATES.items() for name in fns],
)
def test_gaussian_kl_eager(benchmark, library, name, shape):
    benchmark.group = f"gaussian_kl-{library}-{shape[0]}x{shape[1]}"
    benchmark.name = name
    mu, logvar = _inputs(shape, library)
    benchmark(CANDIDATES[library][name], mu, logvar)


def _loss(fn):
    def loss(mu, logvar):
        return fn(mu, logvar).sum()

    return loss


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", ["vaemath", "naive", "floor"])
def test_gaussian_kl_compiled(benchmark, name, shape):
    fn = {"vaemath": gaussian_kl, "naive": _naive_torch, "floor": torch.add}[name]
    compiled = torch.compile(_loss(fn), fullgraph=True)
    mu, logvar = _inputs(shape, "torch")
    compiled(mu, logvar)  # compile outside the timing
    benchmark.group = f"gaussian_kl-compiled-{shape[0]}x{shape[1]}"
    benchmark.name = name
    benchmark(compiled, mu, logvar)
