"""Every differentiable function under every way of differentiating it.

Each case pairs a vaemath call with a direct implementation in plain torch /
jax.numpy (the ``(B, B, D)`` and ``(B, K, D)`` formulas, the textbook KL). The
direct code is differentiated by the framework itself, so it is the reference
for forward mode (``torch.func.jvp``, ``torch.autograd.forward_ad``), double
backward (Hessian-vector products through ``create_graph=True``),
``torch.func.grad`` and ``torch.func.vmap``, and JAX's ``jvp``, ``hessian`` and
``vmap``. vaemath's own fast paths (in-place kernels, the bounded-memory
backward) must give way or agree; a silently wrong tangent fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import vaemath

torch = pytest.importorskip("torch")

B, D, K = 6, 3, 4


def _data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((B, D))
    logvar = rng.uniform(-1.5, 0.5, (B, D))
    return {
        "mu": mu,
        "logvar": logvar,
        "z": mu + np.exp(0.5 * logvar) * rng.standard_normal((B, D)),
        "y": rng.standard_normal((B, D)) + 0.5,
        "comp_mu": rng.standard_normal((K, D)),
        "comp_lv": rng.uniform(-1, 0.5, (K, D)),
        "log_w": rng.standard_normal(K),
    }


def _normal_logpdf(ns, x, m, lv):
    return -0.5 * (math.log(2 * math.pi) + lv + (x - m) ** 2 * ns.exp(-lv))


def _lse(ns, x, axis):
    if ns is torch:
        return torch.logsumexp(x, dim=axis)
    import jax.scipy.special

    return jax.scipy.special.logsumexp(x, axis=axis)


def _direct_lq(ns, z, mu, logvar):
    dens = _normal_logpdf(ns, z[:, None, :], mu[None], logvar[None])
    return _lse(ns, dens.sum(-1), 1) - math.log(B), _lse(ns, dens, 1) - math.log(B)


def _direct_tc(ns, z, mu, logvar):
    lq, lqd = _direct_lq(ns, z, mu, logvar)
    return (lq - lqd.sum(-1)).mean()


def ns_diag(logvar):
    """Cholesky factor diag(exp(logvar / 2)), in the library of ``logvar``."""
    if isinstance(logvar, torch.Tensor):
        return torch.diag_embed(torch.exp(0.5 * logvar))
    import jax.numpy as jnp

    return jnp.exp(0.5 * logvar)[..., :, None] * jnp.eye(logvar.shape[-1])


def _rbf(ns, a, b, h):
    sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return ns.exp(-sq / (2 * h * h))


def _direct_mmd(ns, x, y, h=1.5):
    kxx, kyy, kxy = _rbf(ns, x, x, h), _rbf(ns, y, y, h), _rbf(ns, x, y, h)
    n = x.shape[0]
    off = 1.0 - ns.eye(n, dtype=x.dtype)
    return (kxx * off).sum() / (n * (n - 1)) + (kyy * off).sum() / (n * (n - 1)) - 2 * kxy.mean()


# (name, argument varied, vaemath function of that argument, direct function)
CASES = {
    "gaussian_kl": (
        "logvar",
        lambda d, x: vaemath.gaussian_kl(d["mu"], x),
        lambda ns, d, x: 0.5 * (d["mu"] ** 2 + ns.exp(x) - 1 - x),
    ),
    "gaussian_kl prior": (
        "mu",
        lambda d, x: vaemath.gaussian_kl(x, d["logvar"], 0.3, -1.0),
        lambda ns, d, x: (
            0.5
            * (-1.0 - d["logvar"] + ns.exp(d["logvar"] + 1.0) - 1 + (x - 0.3) ** 2 * math.exp(1.0))
        ),
    ),
    "gaussian_log_density": (
        "mu",
        lambda d, x: vaemath.gaussian_log_density(d["z"], x, d["logvar"]),
        lambda ns, d, x: _normal_logpdf(ns, d["z"], x, d["logvar"]),
    ),
    "log_aggregate_posterior": (
        "mu",
        lambda d, x: vaemath.log_aggregate_posterior(d["z"], x, d["logvar"]),
        lambda ns, d, x: _direct_lq(ns, d["z"], x, d["logvar"])[0],
    ),
    "log_marginal_aggregate_posterior": (
        "logvar",
        lambda d, x: vaemath.log_marginal_aggregate_posterior(d["z"], d["mu"], x),
        lambda ns, d, x: _direct_lq(ns, d["z"], d["mu"], x)[1],
    ),
    "total_correlation": (
        "z",
        lambda d, x: vaemath.total_correlation(x, d["mu"], d["logvar"]),
        lambda ns, d, x: _direct_tc(ns, x, d["mu"], d["logvar"]),
    ),
    "elbo_decomposition.kl": (
        "mu",
        lambda d, x: vaemath.elbo_decomposition(d["z"], x, d["logvar"]).kl,
        lambda ns, d, x: (
            _normal_logpdf(ns, d["z"], x, d["logvar"]).sum(-1)
            + 0.5 * (math.log(2 * math.pi) + d["z"] ** 2).sum(-1)
        ).mean(),
    ),
    "gaussian_mixture_log_density": (
        "comp_mu",
        lambda d, x: vaemath.gaussian_mixture_log_density(d["z"], x, d["comp_lv"], d["log_w"]),
        lambda ns, d, x: _lse(
            ns,
            _normal_logpdf(ns, d["z"][:, None], x[None], d["comp_lv"][None]).sum(-1)
            + d["log_w"]
            - _lse(ns, d["log_w"], 0),
            1,
        ),
    ),
    "mutual_information": (
        "logvar",
        lambda d, x: vaemath.mutual_information(d["z"], d["mu"], x),
        lambda ns, d, x: (
            _normal_logpdf(ns, d["z"], d["mu"], x).sum(-1) - _direct_lq(ns, d["z"], d["mu"], x)[0]
        ).mean(),
    ),
    "dimensionwise_kl": (
        "mu",
        lambda d, x: vaemath.dimensionwise_kl(d["z"], x, d["logvar"]),
        lambda ns, d, x: (
            (
                _direct_lq(ns, d["z"], x, d["logvar"])[1]
                - _normal_logpdf(ns, d["z"], 0.0 * d["z"], 0.0 * d["z"])
            )
            .sum(-1)
            .mean()
        ),
    ),
    "rbf_kernel": (
        "z",
        lambda d, x: vaemath.rbf_kernel(x, d["y"], 1.5),
        lambda ns, d, x: _rbf(ns, x, d["y"], 1.5),
    ),
    "imq_kernel": (
        "z",
        lambda d, x: vaemath.imq_kernel(x, d["y"], 1.5),
        lambda ns, d, x: 1.5 / (1.5 + ((x[:, None, :] - d["y"][None]) ** 2).sum(-1)),
    ),
    "mvn_kl": (
        "mu",
        lambda d, x: vaemath.mvn_kl(x, ns_diag(d["logvar"])),
        lambda ns, d, x: 0.5 * (ns.exp(d["logvar"]) + x**2 - 1 - d["logvar"]).sum(-1),
    ),
    "mmd2": (
        "z",
        lambda d, x: vaemath.mmd2(x, d["y"], bandwidth=1.5),
        lambda ns, d, x: _direct_mmd(ns, x, d["y"]),
    ),
}


def _torch_data(seed: int = 0) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in _data(seed).items()}


@pytest.mark.parametrize("name", list(CASES))
class TestTorchModes:
    def test_forward_mode(self, name):
        arg, ours, direct = CASES[name]
        d = _torch_data()
        tangent = torch.randn(
            d[arg].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        )
        _, ref = torch.func.jvp(lambda x: direct(torch, d, x), (d[arg],), (tangent,))
        _, got = torch.func.jvp(lambda x: ours(d, x), (d[arg],), (tangent,))
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        from torch.autograd import forward_ad

        with forward_ad.dual_level():
            dual = forward_ad.make_dual(d[arg], tangent)
            got_dual = forward_ad.unpack_dual(ours(d, dual)).tangent
        torch.testing.assert_close(got_dual, ref, rtol=1e-10, atol=1e-12)

    def test_double_backward(self, name):
        arg, ours, direct = CASES[name]
        d = _torch_data()
        v = torch.randn(
            d[arg].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )

        def hvp(fn):
            x = d[arg].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
            (h,) = torch.autograd.grad((g * v).sum(), x)
            return h

        torch.testing.assert_close(
            hvp(lambda x: ours(d, x)), hvp(lambda x: direct(torch, d, x)), rtol=1e-9, atol=1e-12
        )

    def test_func_grad_and_vmap(self, name):
        arg, ours, direct = CASES[name]
        d = _torch_data()
        got = torch.func.grad(lambda x: ours(d, x).sum())(d[arg])
        ref = torch.func.grad(lambda x: direct(torch, d, x).sum())(d[arg])
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
        stacked = torch.stack([d[arg], d[arg] * 0.5 + 0.1])
        got_v = torch.func.vmap(lambda x: ours(d, x))(stacked)
        ref_v = torch.stack([direct(torch, d, x) for x in stacked])
        torch.testing.assert_close(got_v, ref_v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "name",
    [
        "gaussian_kl",
        "log_aggregate_posterior",
        "total_correlation",
        "gaussian_mixture_log_density",
        "mmd2",
    ],
)
def test_jax_modes(name):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    arg, ours, direct = CASES[name]
    d = {k: jnp.asarray(v) for k, v in _data().items()}
    tangent = jnp.asarray(np.random.default_rng(1).standard_normal(d[arg].shape))
    _, got = jax.jvp(lambda x: ours(d, x), (d[arg],), (tangent,))
    _, ref = jax.jvp(lambda x: direct(jnp, d, x), (d[arg],), (tangent,))
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    hess = jax.hessian(lambda x: ours(d, x).sum())(d[arg])
    hess_ref = jax.hessian(lambda x: direct(jnp, d, x).sum())(d[arg])
    np.testing.assert_allclose(hess, hess_ref, rtol=1e-9, atol=1e-12)
    stacked = jnp.stack([d[arg], d[arg] * 0.5 + 0.1])
    got_v = jax.vmap(lambda x: ours(d, x))(stacked)
    np.testing.assert_allclose(
        got_v, jnp.stack([direct(jnp, d, x) for x in stacked]), rtol=1e-10, atol=1e-12
    )
