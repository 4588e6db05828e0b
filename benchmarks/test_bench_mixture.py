"""Speed of ``gaussian_mixture_log_density`` against what a user would otherwise write.

Groups (torch, float32; B points against K components in D dimensions):

* ``vaemath`` -- the tiled engine, no ``(B, K, D)`` array forward or backward;
* ``naive`` -- the ``(B, K, D)`` log-density tensor summed over D and
  log-sum-exp'd over K with the log-softmax weights (pythae's VampPrior does this);
* ``torch.distributions`` -- ``MixtureSameFamily(Categorical, Independent(Normal))``.

Modes: ``forward`` (no gradients) and ``forward+backward`` (gradients to the
points, the component parameters and the weights). The naive and
torch.distributions versions are not run where the ``(B, K, D)`` tensor would
exceed about 2 GB with its autograd buffers.
"""

from __future__ import annotations

import pytest

import vaemath

torch = pytest.importorskip("torch")

SIZES = [(256, 64, 16), (1024, 512, 32), (4096, 4096, 64)]
NAIVE_MAX_ELEMENTS = 1024 * 1024 * 64


def naive(z, mu, logvar, log_weights):
    dens = torch.distributions.Normal(mu[None], torch.exp(0.5 * logvar)[None]).log_prob(z[:, None])
    return torch.logsumexp(dens.sum(-1) + torch.log_softmax(log_weights, 0), dim=1)


def distributions(z, mu, logvar, log_weights):
    components = torch.distributions.Independent(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), 1
    )
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=log_weights), components
    )
    return mixture.log_prob(z)


IMPLS = {
    "vaemath": vaemath.gaussian_mixture_log_density,
    "naive": naive,
    "torch.distributions": distributions,
}


def _inputs(b, k, d, grad):
    g = torch.Generator().manual_seed(0)
    tensors = (
        torch.randn(b, d, generator=g),
        torch.randn(k, d, generator=g),
        torch.rand(k, d, generator=g) - 1.0,
        torch.randn(k, generator=g),
    )
    return [t.requires_grad_(grad) for t in tensors]


@pytest.mark.parametrize(("b", "k", "d"), SIZES, ids=[f"{b}x{k}x{d}" for b, k, d in SIZES])
@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
def test_mixture_log_density(benchmark, tag, impl, mode, b, k, d):
    tag(
        "gaussian_mixture_log_density",
        "torch",
        mode,
        f"{b}x{k}x{d}",
        impl,
        heavy=b * k * d > 1 << 22,
    )
    if impl != "vaemath" and b * k * d > NAIVE_MAX_ELEMENTS:
        pytest.skip("the (B, K, D) tensor and its autograd buffers exceed this machine's budget")
    fn = IMPLS[impl]
    args = _inputs(b, k, d, grad=mode != "forward")

    def step():
        if mode == "forward":
            with torch.no_grad():
                return fn(*args)
        out = fn(*args).sum()
        out.backward()
        for t in args:
            t.grad = None
        return out

    rounds = max(1, min(10, (1 << 26) // (b * k * d)))
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=1)


def test_alternatives_agree():
    """The three compute the same values (plain test, not timed)."""
    args = [t.double() for t in _inputs(64, 16, 8, grad=False)]
    ours = vaemath.gaussian_mixture_log_density(*args)
    torch.testing.assert_close(ours, naive(*args), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours, distributions(*args), rtol=1e-12, atol=1e-12)
