"""``vaemath.gaussian_kl`` against what a user would otherwise write, float32.

Each group is one (mode, library, shape) and holds these implementations of the
loss ``kl(mu, logvar).sum()``:

* ``vaemath``: ``vaemath.gaussian_kl(mu, logvar)``;
* ``naive``: the hand-written ``0.5 * (mu**2 + exp(logvar) - 1 - logvar)``;
* ``torch.distributions``: ``kl_divergence(Normal(mu, exp(0.5 * logvar)),
  Normal(0, 1))`` (torch only);
* ``floor``: ``mu + logvar`` (one elementwise op reading both inputs): the
  memory-bound floor no implementation can beat;
* ``float64 exp`` (NumPy only): ``numpy.exp(logvar, dtype=numpy.float64)``, the
  one transcendental of vaemath's float32 kernel, which evaluates in float64.
  NumPy vectorises float64 ``exp`` only with AVX-512; elsewhere this row alone
  can cost more than the whole naive formula, and it bounds the ``naive`` ratio
  from below.

Modes: ``forward`` (inputs without gradients), ``forward+backward`` (inputs
``requires_grad``, ``loss.backward()`` timed with the forward) and, for torch,
``compiled forward+backward`` (the loss inside ``torch.compile``, compiled
before timing). The speed targets on these ratios are in ``ratios.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import vaemath

torch = pytest.importorskip("torch")

SHAPES = [(64, 32), (1024, 64), (4096, 1024)]
SHAPE_IDS = [f"{b}x{d}" for b, d in SHAPES]
OP = "gaussian_kl"


def _inputs(shape, library, grad=False):
    gen = np.random.default_rng(0)
    mu = gen.standard_normal(shape).astype(np.float32)
    logvar = (0.5 * gen.standard_normal(shape)).astype(np.float32)
    if library == "torch":
        return torch.from_numpy(mu).requires_grad_(grad), torch.from_numpy(logvar).requires_grad_(
            grad
        )
    return mu, logvar


def _naive_torch(mu, logvar):
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar)


def _naive_numpy(mu, logvar):
    return 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)


def _torch_distributions(mu, logvar):
    from torch.distributions import Normal, kl_divergence

    return kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))


TORCH_IMPLS = {
    "vaemath": vaemath.gaussian_kl,
    "naive": _naive_torch,
    "torch.distributions": _torch_distributions,
    "floor": torch.add,
}


def _exp64_numpy(mu, logvar):
    return np.exp(logvar, dtype=np.float64)


NUMPY_IMPLS = {
    "vaemath": vaemath.gaussian_kl,
    "naive": _naive_numpy,
    "floor": np.add,
    "float64 exp": _exp64_numpy,
}


def _loss(fn):
    def loss(mu, logvar):
        return fn(mu, logvar).sum()

    return loss


def _forward_backward(loss, mu, logvar):
    def step():
        loss(mu, logvar).backward()
        mu.grad = logvar.grad = None

    return step


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("impl", list(TORCH_IMPLS))
def test_torch_forward(benchmark, tag, impl, shape):
    tag(OP, "torch", "forward", f"{shape[0]}x{shape[1]}", impl)
    mu, logvar = _inputs(shape, "torch")
    benchmark(_loss(TORCH_IMPLS[impl]), mu, logvar)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("impl", list(TORCH_IMPLS))
def test_torch_forward_backward(benchmark, tag, impl, shape):
    tag(OP, "torch", "forward+backward", f"{shape[0]}x{shape[1]}", impl)
    mu, logvar = _inputs(shape, "torch", grad=True)
    benchmark(_forward_backward(_loss(TORCH_IMPLS[impl]), mu, logvar))


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("impl", list(NUMPY_IMPLS))
def test_numpy_forward(benchmark, tag, impl, shape):
    tag(OP, "numpy", "forward", f"{shape[0]}x{shape[1]}", impl)
    mu, logvar = _inputs(shape, "numpy")
    benchmark(_loss(NUMPY_IMPLS[impl]), mu, logvar)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("impl", ["vaemath", "naive", "floor"])
def test_torch_compiled_forward_backward(benchmark, tag, impl, shape):
    tag(
        OP,
        "torch",
        "compiled forward+backward",
        f"{shape[0]}x{shape[1]}",
        impl,
        heavy=shape != SHAPES[0],
    )
    compiled = torch.compile(_loss(TORCH_IMPLS[impl]), fullgraph=True)
    mu, logvar = _inputs(shape, "torch", grad=True)
    step = _forward_backward(compiled, mu, logvar)
    step()  # compile outside the timing
    benchmark(step)


def test_alternatives_agree():
    """The timed implementations compute the same KL (plain test, not timed)."""
    mu, logvar = _inputs((64, 32), "torch")
    ours = vaemath.gaussian_kl(mu, logvar)
    for impl in ("naive", "torch.distributions"):
        torch.testing.assert_close(TORCH_IMPLS[impl](mu, logvar), ours, rtol=1e-4, atol=1e-5)
    mu_np, logvar_np = _inputs((64, 32), "numpy")
    np.testing.assert_allclose(
        _naive_numpy(mu_np, logvar_np), vaemath.gaussian_kl(mu_np, logvar_np), rtol=1e-4, atol=1e-5
    )
