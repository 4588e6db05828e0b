"""Tests of the opt-in jackknife bias correction of the minibatch estimators.

References: a literal leave-one-out loop in float64 NumPy (weights from their
definitions in docs/estimators.rst, each left-out estimate recomputed from
scratch), the closed forms of the linear-Gaussian encoder, and the plain
estimators for the default.

Randomized statistical tests
----------------------------
The closed-form tests draw batches from a fixed synthetic dataset with fixed
seeds, so they are deterministic. Their tolerances are four standard errors of
the batch-averaged estimate (sd over the batches / sqrt(batches)); the
measured values are quoted at each test. A failure after a change of the
seeds alone would be a ~1e-4 event and should be investigated, not retried.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import vaemath
from vaemath._lib._testing import assert_close, to_numpy

METHODS = ("mws", "mss")
JACKKNIFE = {"bias_correction": "jackknife"}


def weights_by_definition(b: int, n: int, method: str) -> np.ndarray:
    """``w_ij``: own 1/N; others share (N-1)/N evenly (MWS) or by strata (MSS)."""
    if n == b:
        return np.full((b, b), 1.0 / b)
    if method == "mws":
        w = np.full((b, b), (n - 1) / (n * (b - 1)))
    else:
        w = np.full((b, b), 1.0 / (b - 1))  # strata of N/(B-1) points, weight (N/(B-1))/N
        for i in range(b):
            w[i, (i + 1) % b] = (n - b + 1) / ((b - 1) * n)  # the remainder stratum
    np.fill_diagonal(w, 1.0 / n)
    return w


def jackknife_reference(log_q: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """Leave each other component out in turn, renormalise, and jackknife ``log sum``.

    ``log_q`` is the ``(B, B)`` matrix ``log q(z_i|x_j)``. Each row's other weights
    carry the mass c = 1 - w_ii; leaving component k out, the remaining others get
    it back in proportion to their weights.
    """
    b = log_q.shape[0]
    full = logsumexp(log_q + np.log(w), axis=1)
    out = np.empty(b)
    for i in range(b):
        c = 1.0 - w[i, i]
        loo = []
        for k in range(b):
            if k == i:
                continue
            keep = [j for j in range(b) if j not in (i, k)]
            wk = w[i, keep] * c / w[i, keep].sum()
            terms = np.concatenate([[np.log(w[i, i]) + log_q[i, i]], np.log(wk) + log_q[i, keep]])
            loo.append(logsumexp(terms))
        m = b - 1  # the jackknife over the m other components
        bias = (m - 1) * (np.mean(loo) - full[i]) * (n - b) / (n - 1)
        out[i] = full[i] - bias
    return out


def reference(z, mu, logvar, n: int, method: str):
    """Jackknifed ``log q(z_i)``, ``log q(z_id)`` and the three terms, in float64."""
    z, mu, logvar = (np.asarray(a, dtype=np.float64) for a in (z, mu, logvar))
    dens = norm.logpdf(z[:, None, :], mu[None, :, :], np.exp(0.5 * logvar[None, :, :]))
    w = weights_by_definition(z.shape[0], n, method)
    lq = jackknife_reference(dens.sum(-1), w, n)
    lqd = np.stack([jackknife_reference(dens[:, :, d], w, n) for d in range(z.shape[1])], axis=1)
    lqzx = np.diag(dens.sum(-1))
    lpz = norm.logpdf(z).sum(-1)
    terms = (np.mean(lqzx - lq), np.mean(lq - lqd.sum(-1)), np.mean(lqd.sum(-1) - lpz))
    return lq, lqd, terms


def latents(b: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(b, d))
    logvar = rng.uniform(-3.0, 0.5, size=(b, d))
    z = mu + np.exp(0.5 * logvar) * rng.normal(size=(b, d))
    return z, mu, logvar


CASES = [
    pytest.param(1000, "mws", id="mws N=1000"),
    pytest.param(1000, "mss", id="mss N=1000"),
    pytest.param(25, "mss", id="mss N=25"),
]


class TestAgainstLeaveOneOut:
    @pytest.mark.parametrize(("dataset_size", "method"), CASES)
    def test_per_sample_and_terms(self, xp, asarray, dataset_size, method):
        z, mu, logvar = latents(12, 3, seed=1)
        lq, lqd, terms = reference(z, mu, logvar, dataset_size, method)
        args = [asarray(a) for a in (z, mu, logvar)]
        kw = {"dataset_size": dataset_size, "method": method, **JACKKNIFE}
        got_q, got_qd = vaemath.log_aggregate_posterior(*args, **kw, return_marginals=True)
        assert_close(got_q, lq, xp=xp, rtol=1e-10)
        assert_close(got_qd, lqd, xp=xp, rtol=1e-10)
        assert_close(vaemath.log_aggregate_posterior(*args, **kw), lq, xp=xp, rtol=1e-10)
        assert_close(vaemath.log_marginal_aggregate_posterior(*args, **kw), lqd, xp=xp, rtol=1e-10)
        t = vaemath.elbo_decomposition(*args, **kw)
        got = (t.mutual_information, t.total_correlation, t.dimensionwise_kl)
        for g, e in zip(got, terms):
            assert_close(g, np.asarray(e), xp=xp, rtol=1e-10, atol=1e-12)
        alone = (
            vaemath.mutual_information(*args, **kw),
            vaemath.total_correlation(*args, **kw),
            vaemath.dimensionwise_kl(*args, **kw),
        )
        for g, e in zip(alone, terms):
            assert_close(g, np.asarray(e), xp=xp, rtol=1e-10, atol=1e-12)

    def test_total_is_unchanged(self):
        # Every log-density estimate moves; MI + TC + DWKL telescopes to the
        # batch mean of log q(z|x) - log p(z), which involves none of them.
        z, mu, logvar = latents(20, 4, seed=2)
        plain = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=300)
        fixed = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=300, **JACKKNIFE)
        np.testing.assert_allclose(fixed.kl, plain.kl, rtol=1e-13)
        assert abs(fixed.mutual_information - plain.mutual_information) > 1e-3

    def test_dominant_component(self):
        # One other component far above the rest: its left-out estimate is
        # computed directly (1 + u cancels there); compare with the loop.
        z, mu, logvar = latents(9, 2, seed=3)
        mu[4] = z[0]  # component 4 sits on query 0 ...
        logvar[4] = -12.0  # ... and is very narrow: it dominates row 0
        lq, lqd, _ = reference(z, mu, logvar, 500, "mws")
        got_q, got_qd = vaemath.log_aggregate_posterior(
            z, mu, logvar, dataset_size=500, return_marginals=True, **JACKKNIFE
        )
        np.testing.assert_allclose(got_q, lq, rtol=1e-10)
        np.testing.assert_allclose(got_qd, lqd, rtol=1e-10)

    def test_float32(self):
        z, mu, logvar = latents(64, 4, seed=4)
        lq, lqd, _ = reference(z, mu, logvar, 10_000, "mss")
        args = [a.astype(np.float32) for a in (z, mu, logvar)]
        got_q, got_qd = vaemath.log_aggregate_posterior(
            *args, dataset_size=10_000, method="mss", return_marginals=True, **JACKKNIFE
        )
        assert got_q.dtype == np.float32
        # float32 rounding of the inputs moves log q by ~1e-6 relative; the
        # correction must not amplify it (it is built from softmax weights).
        np.testing.assert_allclose(got_q, lq, rtol=2e-5)
        np.testing.assert_allclose(got_qd, lqd, rtol=2e-5)


class TestDefaults:
    FUNCTIONS = (
        "mutual_information",
        "total_correlation",
        "dimensionwise_kl",
        "log_aggregate_posterior",
        "log_marginal_aggregate_posterior",
    )

    @pytest.mark.parametrize("name", FUNCTIONS)
    @pytest.mark.parametrize("dataset_size", [None, 1000])
    def test_none_is_the_plain_estimate(self, xp, asarray, name, dataset_size):
        z, mu, logvar = latents(10, 3, seed=5)
        args = [asarray(a) for a in (z, mu, logvar)]
        fn = getattr(vaemath, name)
        kw = {"dataset_size": dataset_size, "method": "mss"}
        plain = to_numpy(fn(*args, **kw))
        np.testing.assert_array_equal(to_numpy(fn(*args, **kw, bias_correction=None)), plain)
        # and the plain estimate is the brute-force one (no correction applied)
        dens = norm.logpdf(z[:, None, :], mu[None, :, :], np.exp(0.5 * logvar[None, :, :]))
        w = (
            np.full((10, 10), 0.1)
            if dataset_size is None
            else weights_by_definition(10, 1000, "mss")
        )
        lq = logsumexp(dens.sum(-1) + np.log(w), axis=1)
        lqd = logsumexp(dens + np.log(w)[:, :, None], axis=1)
        expected = {
            "mutual_information": np.mean(np.diag(dens.sum(-1)) - lq),
            "total_correlation": np.mean(lq - lqd.sum(-1)),
            "dimensionwise_kl": np.mean(lqd.sum(-1) - norm.logpdf(z).sum(-1)),
            "log_aggregate_posterior": lq,
            "log_marginal_aggregate_posterior": lqd,
        }[name]
        np.testing.assert_allclose(plain, expected, rtol=1e-12, atol=1e-13)

    def test_whole_dataset_batch_is_left_exact(self):
        z, mu, logvar = latents(30, 3, seed=6)
        plain = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=30)
        corrected = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=30, **JACKKNIFE)
        for name in ("mutual_information", "total_correlation", "dimensionwise_kl"):
            assert getattr(plain, name) == getattr(corrected, name)


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            pytest.param({"bias_correction": "delta"}, "'jackknife'", id="unknown name"),
            pytest.param({"bias_correction": True}, "'jackknife'", id="a bool"),
            pytest.param({"bias_correction": "Jackknife"}, "'jackknife'", id="case"),
            pytest.param(
                {"bias_correction": "jackknife", "dataset_size": None},
                "needs `dataset_size`",
                id="batch mixture",
            ),
        ],
    )
    @pytest.mark.parametrize("name", ["elbo_decomposition", "mutual_information"])
    def test_options(self, name, kwargs, match):
        z, mu, logvar = latents(5, 2, seed=7)
        kw = {"dataset_size": 100, **kwargs}
        with pytest.raises(ValueError, match=match):
            getattr(vaemath, name)(z, mu, logvar, **kw)

    def test_batch_of_two(self):
        z, mu, logvar = latents(2, 2, seed=7)
        with pytest.raises(ValueError, match="at least 3 samples"):
            vaemath.total_correlation(z, mu, logvar, dataset_size=100, **JACKKNIFE)

    def test_nan_propagates(self):
        z, mu, logvar = latents(8, 2, seed=8)
        z[3, 1] = np.nan
        lq, lqd = vaemath.log_aggregate_posterior(
            z, mu, logvar, dataset_size=100, return_marginals=True, **JACKKNIFE
        )
        assert np.isnan(lq[3])
        assert np.isnan(lqd[3, 1])
        assert np.isfinite(np.delete(lq, 3)).all()
        assert np.isfinite(lqd[:, 0]).all()
        mu[0, 0] = np.nan  # a component in every row
        t = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=100, **JACKKNIFE)
        assert np.isnan(t.mutual_information)
        assert np.isnan(t.total_correlation)


class TestGradients:
    @pytest.mark.parametrize("method", METHODS)
    def test_gradcheck(self, method):
        torch = pytest.importorskip("torch")
        z, mu, logvar = latents(7, 3, seed=9)
        inputs = tuple(torch.tensor(a, requires_grad=True) for a in (z, mu, logvar))
        kw = {"dataset_size": 200, "method": method, **JACKKNIFE}

        def terms(*args):
            t = vaemath.elbo_decomposition(*args, **kw)
            return t.mutual_information, t.total_correlation, t.dimensionwise_kl

        assert torch.autograd.gradcheck(terms, inputs)
        assert torch.autograd.gradgradcheck(terms, inputs)

    def test_matches_no_grad_values(self):
        torch = pytest.importorskip("torch")
        z, mu, logvar = latents(16, 3, seed=10)
        leaves = [torch.tensor(a, requires_grad=True) for a in (z, mu, logvar)]
        kw = {"dataset_size": 500, **JACKKNIFE}
        with_grad = vaemath.elbo_decomposition(*leaves, **kw)
        assert with_grad.mutual_information.requires_grad
        plain = vaemath.elbo_decomposition(z, mu, logvar, **kw)
        for name in ("mutual_information", "total_correlation", "dimensionwise_kl"):
            got = getattr(with_grad, name).detach().numpy()
            np.testing.assert_allclose(got, getattr(plain, name), rtol=1e-12, atol=1e-14)

    def test_forward_mode(self):
        torch = pytest.importorskip("torch")
        from torch.func import jvp

        z, mu, logvar = latents(6, 2, seed=11)
        args = tuple(torch.tensor(a) for a in (z, mu, logvar))
        direction = tuple(torch.tensor(a) for a in latents(6, 2, seed=12))

        def mi(*a):
            return vaemath.mutual_information(*a, dataset_size=50, **JACKKNIFE)

        _, tangent = jvp(mi, args, direction)
        h = 1e-6
        plus = mi(*(a + h * d for a, d in zip(args, direction)))
        minus = mi(*(a - h * d for a, d in zip(args, direction)))
        np.testing.assert_allclose(float(tangent), float((plus - minus) / (2 * h)), rtol=1e-6)


class TestClosedForm:
    """The corrected estimates on the linear-Gaussian encoder of docs/estimators.rst."""

    A = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.5, 0.9]])
    S = 0.5
    N = 20_000

    def truth(self):
        cov = self.A @ self.A.T + self.S**2 * np.eye(3)
        logdet = np.linalg.slogdet(cov)[1]
        mi = 0.5 * logdet - 1.5 * math.log(self.S**2)
        tc = 0.5 * (np.log(np.diag(cov)).sum() - logdet)
        return np.array([mi, tc])

    def estimates(self, b: int, repeats: int, method: str, seed: int):
        """``(repeats, 2, 2)``: batches x (plain, corrected) x (MI, TC)."""
        rng = np.random.default_rng(seed)
        mu_all = rng.standard_normal((self.N, 3)) @ self.A.T
        out = []
        for _ in range(repeats):
            mu = mu_all[rng.choice(self.N, size=b, replace=False)]
            logvar = np.full(mu.shape, math.log(self.S**2))
            z = mu + self.S * rng.standard_normal(mu.shape)
            row = []
            for correction in (None, "jackknife"):
                t = vaemath.elbo_decomposition(
                    z, mu, logvar, dataset_size=self.N, method=method, bias_correction=correction
                )
                row.append([float(t.mutual_information), float(t.total_correlation)])
            out.append(row)
        return np.array(out)

    @pytest.mark.slow
    @pytest.mark.parametrize("method", METHODS)
    def test_unbiased_within_standard_error(self, method):
        # Measured at B = 256 over 100 batches: corrected bias MI +0.002, TC
        # -0.003 (standard errors 0.009, 0.005); the plain estimate is off by
        # +0.05 / -0.03, about six standard errors, and must fail the same test.
        est = self.estimates(256, 100, method, seed=1)
        bias = est.mean(axis=0) - self.truth()
        se = est.std(axis=0, ddof=1) / math.sqrt(est.shape[0])
        assert np.all(np.abs(bias[1]) < 4 * se[1]), (bias, se)
        assert np.any(np.abs(bias[0]) > 4 * se[0]), (bias, se)

    def test_halves_the_bias_at_small_batches(self):
        # Measured at B = 64 over 400 batches: MI bias +0.20 -> +0.02, TC
        # -0.12 -> -0.03 (standard errors 0.011 and 0.006), sd ratio 0.97 and 1.16.
        est = self.estimates(64, 400, "mws", seed=2)
        bias = est.mean(axis=0) - self.truth()
        se = est.std(axis=0, ddof=1) / math.sqrt(est.shape[0])
        assert np.all(np.abs(bias[1]) + 4 * se[1] < 0.5 * np.abs(bias[0])), (bias, se)
        sd = est.std(axis=0, ddof=1)
        assert np.all(sd[1] < 1.5 * sd[0]), sd
