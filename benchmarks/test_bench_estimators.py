"""Speed of ``elbo_decomposition`` against the straightforward ``(B, B, D)`` implementation.

Each group is one (library, mode, B x D) and holds ``vaemath``
(``elbo_decomposition(..., dataset_size=50000, method="mss")``) and ``naive``,
timed on the same inputs in the same run; modes are ``forward`` (no gradients)
and ``forward+backward`` (the sum of the three terms back-propagated to ``mu``
and ``logvar``, the reparametrised sample ``z`` included). The naive version
is what the published beta-TCVAE code does: build the ``(B, B, D)``
log-density tensor, sum it for the joint, log-sum-exp both.
At ``(4096, 64)`` it needs a 4.3 GB tensor in float32 (about 12 GB with its
temporaries and autograd buffers), so it is not run there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import vaemath

torch = pytest.importorskip("torch")

SIZES = [(256, 10), (1024, 10), (2048, 32), (4096, 64)]
NAIVE_MAX_ELEMENTS = 2048 * 2048 * 32
DATASET_SIZE = 50_000


def _log_weights(b: int) -> np.ndarray:
    """MSS log weights for dataset_size = 50 000 (as vaemath uses them)."""
    n = DATASET_SIZE
    w = np.full((b, b), 1.0 / (b - 1))
    w[np.arange(b), (np.arange(b) + 1) % b] = (n - b + 1) / (n * (b - 1))
    np.fill_diagonal(w, 1.0 / n)
    return np.log(w)


def naive_torch(z, mu, logvar, logw):
    log_2pi = math.log(2 * math.pi)
    dens = -0.5 * (
        log_2pi + logvar[None] + (z[:, None, :] - mu[None]) ** 2 * torch.exp(-logvar[None])
    )
    lq = torch.logsumexp(dens.sum(-1) + logw, dim=1)
    lqd = torch.logsumexp(dens + logw[:, :, None], dim=1)
    lqzx = (-0.5 * (log_2pi + logvar + (z - mu) ** 2 * torch.exp(-logvar))).sum(-1)
    lpz = (-0.5 * (log_2pi + z**2)).sum(-1)
    return (lqzx - lq).mean(), (lq - lqd.sum(-1)).mean(), (lqd.sum(-1) - lpz).mean()


def naive_numpy(z, mu, logvar, logw):
    from scipy.special import logsumexp

    log_2pi = math.log(2 * math.pi)
    dens = -0.5 * (log_2pi + logvar[None] + (z[:, None, :] - mu[None]) ** 2 * np.exp(-logvar[None]))
    lq = logsumexp(dens.sum(-1) + logw, axis=1)
    lqd = logsumexp(dens + logw[:, :, None], axis=1)
    lqzx = (-0.5 * (log_2pi + logvar + (z - mu) ** 2 * np.exp(-logvar))).sum(-1)
    lpz = (-0.5 * (log_2pi + z**2)).sum(-1)
    return (lqzx - lq).mean(), (lq - lqd.sum(-1)).mean(), (lqd.sum(-1) - lpz).mean()


def vaemath_terms(z, mu, logvar, logw):
    t = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=DATASET_SIZE, method="mss")
    return t.mutual_information, t.total_correlation, t.dimensionwise_kl


def _inputs(b, d, grad):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(b, d, generator=g)
    logvar = torch.rand(b, d, generator=g) * 4 - 5
    eps = torch.randn(b, d, generator=g)
    return mu.requires_grad_(grad), logvar.requires_grad_(grad), eps


def _run(benchmark, fn, b, d, *, grad, rounds):
    mu, logvar, eps = _inputs(b, d, grad)
    logw = torch.tensor(_log_weights(b), dtype=torch.float32)

    def step():
        z = mu + torch.exp(0.5 * logvar) * eps
        mi, tc, dw = fn(z, mu, logvar, logw)
        if grad:
            (mi + tc + dw).backward()
            mu.grad = logvar.grad = None
        return float((mi + tc + dw).detach())

    # vaemath always warms up: above 2**25 terms its first call compiles the fused kernels
    warm = rounds > 1 or fn is vaemath_terms
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=1 if warm else 0)


def _rounds(b, d):
    return max(1, min(10, (1 << 27) // (b * b * d)))


IMPLS = [pytest.param(naive_torch, id="naive"), pytest.param(vaemath_terms, id="vaemath")]
OP = "elbo_decomposition"


SMOKE_MAX = 256 * 256 * 10  # larger cases only run when timed


def _impl_name(fn) -> str:
    return "vaemath" if fn is vaemath_terms else "naive"


@pytest.mark.parametrize(("b", "d"), SIZES, ids=[f"{b}x{d}" for b, d in SIZES])
@pytest.mark.parametrize("impl", IMPLS)
def test_torch_forward(benchmark, tag, impl, b, d):
    tag(OP, "torch", "forward", f"{b}x{d}", _impl_name(impl), heavy=b * b * d > SMOKE_MAX)
    if impl is naive_torch and b * b * d > NAIVE_MAX_ELEMENTS:
        pytest.skip("naive (B, B, D) needs ~12 GB here: not runnable on this machine")
    with torch.no_grad():
        _run(benchmark, impl, b, d, grad=False, rounds=_rounds(b, d))


@pytest.mark.parametrize(("b", "d"), SIZES, ids=[f"{b}x{d}" for b, d in SIZES])
@pytest.mark.parametrize("impl", IMPLS)
def test_torch_forward_backward(benchmark, tag, impl, b, d):
    tag(OP, "torch", "forward+backward", f"{b}x{d}", _impl_name(impl), heavy=b * b * d > SMOKE_MAX)
    if impl is naive_torch and b * b * d > NAIVE_MAX_ELEMENTS:
        pytest.skip("naive (B, B, D) needs ~12 GB here: not runnable on this machine")
    _run(benchmark, impl, b, d, grad=True, rounds=_rounds(b, d))


@pytest.mark.parametrize(("b", "d"), SIZES[:3], ids=[f"{b}x{d}" for b, d in SIZES[:3]])
@pytest.mark.parametrize(
    "impl", [pytest.param(naive_numpy, id="naive"), pytest.param(vaemath_terms, id="vaemath")]
)
def test_numpy_forward(benchmark, tag, impl, b, d):
    tag(OP, "numpy", "forward", f"{b}x{d}", _impl_name(impl), heavy=b * b * d > SMOKE_MAX)
    if impl is naive_numpy and b * b * d > 1024 * 1024 * 10:
        pytest.skip("naive NumPy at this size takes minutes and ~3 GB")
    mu, logvar, eps = (t.numpy() for t in _inputs(b, d, grad=False))
    logw = _log_weights(b).astype(np.float32)
    z = mu + np.exp(0.5 * logvar) * eps
    benchmark.pedantic(impl, args=(z, mu, logvar, logw), rounds=_rounds(b, d), warmup_rounds=1)


def test_naive_matches_vaemath():
    """The alternatives compute the same three terms (plain test, not timed)."""
    mu, logvar, eps = _inputs(64, 5, grad=False)
    z = mu + torch.exp(0.5 * logvar) * eps
    logw = _log_weights(64)
    ours = [float(t) for t in vaemath_terms(z, mu, logvar, torch.tensor(logw))]
    theirs = [float(t) for t in naive_torch(z, mu, logvar, torch.tensor(logw, dtype=torch.float32))]
    np.testing.assert_allclose(theirs, ours, rtol=1e-3, atol=1e-3)
    arrays = (z.numpy(), mu.numpy(), logvar.numpy(), logw)
    numpy_terms = [float(t) for t in naive_numpy(*arrays)]
    np.testing.assert_allclose(numpy_terms, ours, rtol=1e-3, atol=1e-3)
