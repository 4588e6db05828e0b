"""Gaussian mixtures: ``gaussian_mixture_log_density`` and mixture priors in the estimators.

References are brute-force float64: the full ``(B, K, D)`` array of
``scipy.stats.norm.logpdf`` and ``scipy.special.logsumexp``, and mpmath for
well-separated mixtures whose components underflow in floating point.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

import vaemath
from vaemath._lib._testing import assert_close, to_numpy


def reference_mixture(z, mu, logvar, log_weights=None):
    """(B,) log sum_k w_k N(z; mu_k, e^logvar_k) and (B, D) per-dimension mixtures."""
    z, mu, logvar = (np.asarray(a, np.float64) for a in (z, mu, logvar))
    k = mu.shape[0]
    lw = np.full(k, -math.log(k)) if log_weights is None else log_weights - logsumexp(log_weights)
    dens = stats.norm.logpdf(z[:, None, :], mu[None], np.exp(0.5 * logvar)[None])
    return logsumexp(dens.sum(-1) + lw, axis=1), logsumexp(dens + lw[None, :, None], axis=1)


def _case(b=40, k=6, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((b, d)) * 2,
        rng.standard_normal((k, d)) * 2,
        rng.uniform(-2, 1, (k, d)),
        rng.standard_normal(k),
    )


class TestGaussianMixtureLogDensity:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    @pytest.mark.parametrize("weighted", [True, False], ids=["weights", "uniform"])
    def test_matches_brute_force(self, xp, asarray, dtype, weighted):
        z, mu, logvar, lw = _case()
        out = vaemath.gaussian_mixture_log_density(
            asarray(z, dtype), asarray(mu, dtype), asarray(logvar, dtype),
            asarray(lw, dtype) if weighted else None,
        )  # fmt: skip
        ref, _ = reference_mixture(z, mu, logvar, lw if weighted else None)
        assert_close(out, asarray(ref, dtype), xp=xp)

    def test_unnormalised_weights(self):
        z, mu, logvar, lw = _case()
        a = vaemath.gaussian_mixture_log_density(z, mu, logvar, lw)
        b = vaemath.gaussian_mixture_log_density(z, mu, logvar, lw + 123.0)
        np.testing.assert_allclose(a, b, rtol=1e-13)
        uniform = vaemath.gaussian_mixture_log_density(z, mu, logvar, np.zeros(6))
        np.testing.assert_allclose(uniform, vaemath.gaussian_mixture_log_density(z, mu, logvar))

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_underflowing_components(self, dtype):
        mpmath = pytest.importorskip("mpmath")
        mpmath.mp.dps = 60
        # components 1000 apart with sd 0.1: every density but the nearest underflows
        mu = np.array([[-1000.0, 0.0], [0.0, 0.0], [1000.0, 0.0]])
        logvar = np.full((3, 2), math.log(0.01))
        z = np.array([[0.3, -0.2], [999.0, 0.1], [-1000.05, 0.05], [500.0, 0.0]])
        lw = np.array([0.0, 1.0, -2.0])
        z, mu, logvar, lw = (a.astype(dtype) for a in (z, mu, logvar, lw))
        out = vaemath.gaussian_mixture_log_density(z, mu, logvar, lw)
        var = mpmath.e ** mpmath.mpf(float(logvar[0, 0]))  # the variance as rounded
        w = [mpmath.e ** mpmath.mpf(float(v)) for v in lw]
        total = sum(w)
        for i, row in enumerate(z):
            terms = []
            for c in range(3):
                log_n = sum(
                    -0.5 * mpmath.log(2 * mpmath.pi * var)
                    - (mpmath.mpf(float(row[d])) - mpmath.mpf(float(mu[c, d]))) ** 2 / (2 * var)
                    for d in range(2)
                )
                terms.append(w[c] / total * mpmath.e**log_n)
            exact = float(mpmath.log(sum(terms)))
            rtol = 1e-6 if dtype == "float32" else 1e-14
            assert float(out[i]) == pytest.approx(exact, rel=rtol), (i, float(out[i]), exact)

    def test_gradients_torch(self):
        torch = pytest.importorskip("torch")
        args = [torch.tensor(a, requires_grad=True) for a in _case(b=7, k=4, d=2)]
        assert torch.autograd.gradcheck(vaemath.gaussian_mixture_log_density, args)
        # and against autograd through the (B, K, D) formula
        out = vaemath.gaussian_mixture_log_density(*args)
        grads = torch.autograd.grad(out.sum(), args)
        z, mu, logvar, lw = args
        dens = torch.distributions.Normal(mu[None], torch.exp(0.5 * logvar)[None]).log_prob(
            z[:, None]
        )
        naive = torch.logsumexp(dens.sum(-1) + torch.log_softmax(lw, 0), dim=1)
        for got, want in zip(grads, torch.autograd.grad(naive.sum(), args), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)

    def test_gradients_jax(self):
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        torch = pytest.importorskip("torch")
        case = _case(b=5, k=3, d=2)
        z, mu, logvar, lw = (jnp.asarray(a) for a in case)
        grad = jax.grad(lambda m: vaemath.gaussian_mixture_log_density(z, m, logvar, lw).sum())(mu)
        # torch's gradient comes from the engine's own backward pass, jax's from autodiff
        t = [torch.tensor(a, requires_grad=i == 1) for i, a in enumerate(case)]
        vaemath.gaussian_mixture_log_density(*t).sum().backward()
        np.testing.assert_allclose(np.asarray(grad), t[1].grad.numpy(), rtol=1e-10, atol=1e-14)

    def test_nan_in_nan_out(self):
        z, mu, logvar, lw = _case()
        z[3, 1] = np.nan
        out = vaemath.gaussian_mixture_log_density(z, mu, logvar, lw)
        assert np.isnan(out[3])
        assert np.all(np.isfinite(np.delete(out, 3)))

    @pytest.mark.parametrize(
        ("change", "match"),
        [
            pytest.param(lambda z, m, v, w: (z[0], m, v, w), "`z` must have shape", id="1-d z"),
            pytest.param(lambda z, m, v, w: (z, m, v[:, :2], w), "one shape", id="logvar"),
            pytest.param(lambda z, m, v, w: (z[:, :2], m, v, w), "the D of `z`", id="D"),
            pytest.param(lambda z, m, v, w: (z, m, v, w[:3]), "log_weights", id="weights"),
        ],
    )
    def test_bad_shapes(self, change, match):
        with pytest.raises(ValueError, match=match):
            vaemath.gaussian_mixture_log_density(*change(*_case()))

    def test_mixed_libraries(self):
        torch = pytest.importorskip("torch")
        z, mu, logvar, lw = _case()
        with pytest.raises(TypeError):
            vaemath.gaussian_mixture_log_density(torch.tensor(z), mu, logvar, lw)

    def test_memory_forward_backward_in_a_subprocess(self):
        pytest.importorskip("torch")
        code = textwrap.dedent(
            """
            import resource, torch, vaemath
            torch.set_num_threads(2)
            g = torch.Generator().manual_seed(0)
            b = k = 4096; d = 64
            z = torch.randn(b, d, generator=g, requires_grad=True)
            mu = torch.randn(k, d, generator=g, requires_grad=True)
            lv = torch.zeros(k, d, requires_grad=True)
            lw = torch.zeros(k, requires_grad=True)
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            vaemath.gaussian_mixture_log_density(z, mu, lv, lw).sum().backward()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print((peak - base) / 1024)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
        )
        assert out.returncode == 0, out.stderr
        assert float(out.stdout.strip()) < 1536  # the (B, K, D) array alone is 4,096 MiB


class TestMixturePrior:
    def _batch(self, seed=1):
        rng = np.random.default_rng(seed)
        mu = rng.standard_normal((24, 3))
        logvar = rng.uniform(-2, 0, (24, 3))
        z = mu + np.exp(0.5 * logvar) * rng.standard_normal((24, 3))
        prior_mu = rng.standard_normal((4, 3)) * 1.5
        prior_logvar = rng.uniform(-1, 0.5, (4, 3))
        return z, mu, logvar, prior_mu, prior_logvar, rng.standard_normal(4)

    def test_terms_against_brute_force(self, xp, asarray):
        z, mu, logvar, pm, pv, lw = self._batch()
        out = vaemath.elbo_decomposition(
            asarray(z), asarray(mu), asarray(logvar), asarray(pm), asarray(pv),
            prior_log_weights=asarray(lw), dataset_size=1000, method="mss",
        )  # fmt: skip
        gaussian = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=1000, method="mss")
        log_pz, log_pzd = reference_mixture(z, pm, pv, lw)
        log_qzx = stats.norm.logpdf(z, mu, np.exp(0.5 * logvar)).sum(-1)
        lq = vaemath.log_aggregate_posterior(z, mu, logvar, dataset_size=1000, method="mss")
        lqd = vaemath.log_marginal_aggregate_posterior(
            z, mu, logvar, dataset_size=1000, method="mss"
        )
        np.testing.assert_allclose(
            to_numpy(out.mutual_information), gaussian.mutual_information, rtol=1e-12
        )
        np.testing.assert_allclose(
            to_numpy(out.total_correlation), gaussian.total_correlation, rtol=1e-12
        )
        np.testing.assert_allclose(
            to_numpy(out.dimensionwise_kl), np.mean(lqd.sum(-1) - log_pzd.sum(-1)), rtol=1e-10
        )
        np.testing.assert_allclose(
            to_numpy(out.prior_dependence), np.mean(log_pzd.sum(-1) - log_pz), rtol=1e-10
        )
        # MI + TC + dwKL + prior dependence = mean[log q(z|x) - log p(z)]
        np.testing.assert_allclose(to_numpy(out.kl), np.mean(log_qzx - log_pz), rtol=1e-10)
        assert abs(np.mean(lq) - np.mean(lq)) == 0.0

    def test_dimensionwise_kl_and_ignored_keyword(self):
        z, mu, logvar, pm, pv, lw = self._batch()
        full = vaemath.elbo_decomposition(z, mu, logvar, pm, pv, prior_log_weights=lw)
        dwkl = vaemath.dimensionwise_kl(z, mu, logvar, pm, pv, prior_log_weights=lw)
        np.testing.assert_allclose(dwkl, full.dimensionwise_kl, rtol=1e-12)
        for fn in (vaemath.mutual_information, vaemath.total_correlation):
            np.testing.assert_array_equal(
                fn(z, mu, logvar, prior_log_weights=lw), fn(z, mu, logvar)
            )

    def test_one_component_is_the_gaussian_prior(self):
        z, mu, logvar, pm, pv, _ = self._batch()
        mix = vaemath.elbo_decomposition(
            z, mu, logvar, pm[:1], pv[:1], prior_log_weights=np.zeros(1)
        )
        gauss = vaemath.elbo_decomposition(z, mu, logvar, pm[0], pv[0])
        assert float(gauss.prior_dependence) == 0.0
        assert abs(float(mix.prior_dependence)) < 1e-12
        np.testing.assert_allclose(mix.dimensionwise_kl, gauss.dimensionwise_kl, rtol=1e-12)

    def test_gradients_reach_the_prior(self):
        torch = pytest.importorskip("torch")
        z, mu, logvar, pm, pv, lw = (torch.tensor(a) for a in self._batch())
        prior = [t.clone().requires_grad_(True) for t in (pm, pv, lw)]

        def kl(pm_, pv_, lw_):
            return vaemath.elbo_decomposition(z, mu, logvar, pm_, pv_, prior_log_weights=lw_).kl

        assert torch.autograd.gradcheck(kl, prior)

    def test_bad_mixture_prior(self):
        z, mu, logvar, pm, pv, lw = self._batch()
        with pytest.raises(ValueError, match=r"broadcast to \(K, D\)"):
            vaemath.elbo_decomposition(z, mu, logvar, pm[:3], pv, prior_log_weights=lw)
        with pytest.raises(ValueError, match=r"shape \(K,\)"):
            vaemath.elbo_decomposition(z, mu, logvar, pm, pv, prior_log_weights=lw[:, None])
