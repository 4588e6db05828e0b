"""Tests of the minibatch MI / TC / dimension-wise KL estimators and the dataset evaluator.

References are brute-force float64 NumPy (the full ``(B, B, D)`` log-density
array with weight matrices built entry by entry from their definitions),
closed forms of the linear-Gaussian model, and exact full-dataset sums.

Randomized statistical tests
----------------------------
The convergence tests draw minibatches with fixed seeds, so they are
deterministic. Their tolerances are about four standard errors of the
batch-averaged estimate (measured when the tests were written) plus the
known O(1/B) bias of the log of a mixture estimate; a failure after a change
of the seeds alone would be a ~1e-4 event and should be investigated, not
retried.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import norm

import vaemath
from vaemath._estimators import _tiles as _estimators_core
from vaemath._lib._testing import assert_close, to_numpy

METHODS = ("mws", "mss")


# -- brute-force references ----------------------------------------------------------


def weight_matrix(b: int, dataset_size: int | None, method: str) -> np.ndarray:
    """``w_ij`` built entry by entry from the definitions in docs/estimators.rst."""
    w = np.empty((b, b))
    n = dataset_size
    for i in range(b):
        for j in range(b):
            if n is None or n == b:
                w[i, j] = 1.0 / b  # (n == b: the batch is the dataset, the exact mixture)
            elif j == i:
                w[i, j] = 1.0 / n  # own component: a known term of the dataset mixture
            elif method == "mws":
                w[i, j] = (n - 1) / n / (b - 1)  # other N-1 points, B-1 uniform draws
            elif j == (i + 1) % b:
                w[i, j] = (n - b + 1) / (b - 1) / n  # remainder stratum
            else:
                w[i, j] = (n / (b - 1)) / n  # stratum of N/(B-1) points
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-12)
    return w


def brute_force(z, mu, logvar, w, *, prior_mu=0.0, prior_logvar=0.0):
    """Float64 ``(B, B, D)`` reference: log q(z_i), log q(z_id) and the three terms."""
    z, mu, logvar = (np.asarray(a, dtype=np.float64) for a in (z, mu, logvar))
    dens = norm.logpdf(z[:, None, :], mu[None, :, :], np.exp(0.5 * logvar[None, :, :]))
    lq = logsumexp(dens.sum(-1) + np.log(w), axis=1)
    lqd = logsumexp(dens + np.log(w)[:, :, None], axis=1)
    lqzx = norm.logpdf(z, mu, np.exp(0.5 * logvar)).sum(-1)
    lpz = norm.logpdf(z, prior_mu, np.exp(0.5 * np.asarray(prior_logvar))).sum(-1)
    terms = (np.mean(lqzx - lq), np.mean(lq - lqd.sum(-1)), np.mean(lqd.sum(-1) - lpz))
    return lq, lqd, terms


def latents(b: int, d: int, seed: int = 0, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    mu = offset + rng.normal(size=(b, d))
    logvar = rng.uniform(-4.0, 1.0, size=(b, d))
    z = mu + np.exp(0.5 * logvar) * rng.normal(size=(b, d))
    return z, mu, logvar


@pytest.fixture(params=[None, 4096, 64], ids=["default tile", "small tiles", "tiny tiles"])
def tile(request, monkeypatch):
    """Exercise one tile, several row tiles, and several dimension chunks per tile."""
    if request.param is not None:
        monkeypatch.setattr(_estimators_core, "_TILE_ELEMENTS", request.param)
    return request.param


SIZES = [
    pytest.param(None, "mws", id="batch mixture"),
    pytest.param(None, "mss", id="batch mixture mss"),
    pytest.param(40, "mws", id="mws N=B"),
    pytest.param(40, "mss", id="mss N=B"),
    pytest.param(1000, "mws", id="mws N=1000"),
    pytest.param(1000, "mss", id="mss N=1000"),
    pytest.param(10**9, "mss", id="mss N=1e9"),
]


class TestLogAggregatePosterior:
    @pytest.mark.parametrize(("dataset_size", "method"), SIZES)
    def test_brute_force(self, xp, asarray, tile, dataset_size, method):
        z, mu, logvar = latents(40, 5)
        w = weight_matrix(40, dataset_size, method)
        lq, lqd, _ = brute_force(z, mu, logvar, w)
        args = (asarray(z), asarray(mu), asarray(logvar))
        kw = {"dataset_size": dataset_size, "method": method}
        got = vaemath.log_aggregate_posterior(*args, **kw)
        assert_close(got, lq, xp=xp, dtype=xp.float64, shape=(40,), rtol=1e-12)
        got_d = vaemath.log_marginal_aggregate_posterior(*args, **kw)
        assert_close(got_d, lqd, xp=xp, dtype=xp.float64, shape=(40, 5), rtol=1e-12)

    @pytest.mark.parametrize(
        "offset", [pytest.param(0.0, id="centred"), pytest.param(100.0, id="offset 100")]
    )
    def test_float32_accuracy(self, xp, asarray, offset):
        # Each density term is evaluated directly from (z - mu), never by
        # expanding the square, so float32 keeps ~1e-6 relative accuracy
        # against float64 even far from the origin (an expanded quadratic
        # form errs by 0.36 on the own-component joint log-density here).
        # Reference from the float32-rounded inputs: only the computation is judged.
        z, mu, logvar = (a.astype(np.float32) for a in latents(64, 16, offset=offset))
        lq, lqd, _ = brute_force(z, mu, logvar, weight_matrix(64, None, "mws"))
        args = [asarray(a, dtype="float32") for a in (z, mu, logvar)]
        got = vaemath.log_aggregate_posterior(*args)
        scale = np.abs(lq).max()
        assert_close(got, lq, xp=xp, dtype=xp.float32, rtol=0, atol=2e-6 * scale)
        got_d = vaemath.log_marginal_aggregate_posterior(*args)
        assert_close(got_d, lqd, xp=xp, dtype=xp.float32, rtol=0, atol=2e-5)

    def test_unbiased_density_for_finite_dataset(self):
        # E[q_hat(z_i)] = q(z_i) = (1/N) sum_n q(z_i|x_n) when the other batch
        # members are drawn uniformly without replacement from the other points:
        # a direct check of both weightings. 4000 batches; tolerance 4 SE.
        n, b, d = 30, 6, 2
        data_mu, data_lv = latents(n, d, seed=3)[1:]
        rng = np.random.default_rng(4)
        z0 = data_mu[0] + np.exp(0.5 * data_lv[0]) * rng.normal(size=d)
        exact = np.exp(logsumexp(norm.logpdf(z0, data_mu, np.exp(0.5 * data_lv)).sum(-1))) / n
        for method in METHODS:
            est = []
            for _ in range(4000):
                idx = np.concatenate([[0], 1 + rng.permutation(n - 1)[: b - 1]])
                z = np.repeat(z0[None], b, axis=0)
                lq = vaemath.log_aggregate_posterior(
                    z, data_mu[idx], data_lv[idx], dataset_size=n, method=method
                )
                est.append(np.exp(lq[0]))
            se = np.std(est) / math.sqrt(len(est))
            assert abs(np.mean(est) - exact) < 4 * se, method


class TestElboDecomposition:
    @pytest.mark.parametrize(("dataset_size", "method"), SIZES)
    def test_brute_force(self, xp, asarray, dataset_size, method):
        z, mu, logvar = latents(40, 4, seed=1)
        prior_mu, prior_logvar = np.array([0.5, 0.0, -0.5, 1.0]), np.array([0.0, 1.0, -1.0, 0.5])
        _, _, terms = brute_force(
            z,
            mu,
            logvar,
            weight_matrix(40, dataset_size, method),
            prior_mu=prior_mu,
            prior_logvar=prior_logvar,
        )
        got = vaemath.elbo_decomposition(
            *(asarray(a) for a in (z, mu, logvar, prior_mu, prior_logvar)),
            dataset_size=dataset_size,
            method=method,
        )
        assert isinstance(got, vaemath.ElboDecomposition)
        for name, expected in zip(
            ("mutual_information", "total_correlation", "dimensionwise_kl"), terms, strict=True
        ):
            assert_close(getattr(got, name), expected, xp=xp, dtype=xp.float64, shape=())
        # The single-term functions agree with the shared computation.
        single = {
            "mutual_information": vaemath.mutual_information,
            "total_correlation": vaemath.total_correlation,
        }
        kw = {"dataset_size": dataset_size, "method": method}
        for name, fn in single.items():
            value = fn(asarray(z), asarray(mu), asarray(logvar), **kw)
            assert_close(value, to_numpy(getattr(got, name)), xp=xp, shape=(), rtol=1e-13)
        dw = vaemath.dimensionwise_kl(
            *(asarray(a) for a in (z, mu, logvar, prior_mu, prior_logvar)), **kw
        )
        assert_close(dw, to_numpy(got.dimensionwise_kl), xp=xp, shape=(), rtol=1e-13)

    @settings(
        deadline=None, max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        b=st.integers(2, 12),
        d=st.integers(1, 5),
        seed=st.integers(0, 2**16),
        n_extra=st.one_of(st.none(), st.integers(0, 10**6)),
        method=st.sampled_from(METHODS),
    )
    def test_identity(self, xp, asarray, b, d, seed, n_extra, method):
        # MI + TC + DWKL == mean(log q(z|x) - log p(z)), from scipy log-densities.
        if "jax" in xp.__name__:
            pytest.skip("eager JAX recompiles every op for each new shape (~4 s per example)")
        rng = np.random.default_rng(seed)
        mu = rng.normal(size=(b, d)) * 3
        logvar = rng.uniform(-8, 8, size=(b, d))
        z = mu + np.exp(0.5 * logvar) * rng.normal(size=(b, d))
        dataset_size = None if n_extra is None else b + n_extra
        got = vaemath.elbo_decomposition(
            asarray(z), asarray(mu), asarray(logvar), 0.3, -0.7,
            dataset_size=dataset_size, method=method,
        )  # fmt: skip
        direct = np.mean(
            norm.logpdf(z, mu, np.exp(0.5 * logvar)).sum(-1)
            - norm.logpdf(z, 0.3, math.exp(-0.35)).sum(-1)
        )
        scale = 1.0 + abs(to_numpy(got.mutual_information)) + abs(to_numpy(got.dimensionwise_kl))
        assert_close(got.kl, direct, xp=xp, shape=(), rtol=0, atol=1e-12 * scale)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_dtype_and_requires_grad(self, xp, asarray, dtype):
        z, mu, logvar = (asarray(a, dtype=dtype) for a in latents(8, 3))
        if hasattr(z, "requires_grad_"):
            mu.requires_grad_()
        got = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=100, method="mss")
        for value in (got.mutual_information, got.total_correlation, got.dimensionwise_kl):
            assert value.dtype == getattr(xp, dtype)
            assert tuple(value.shape) == ()
            if hasattr(value, "requires_grad"):
                assert value.requires_grad

    def test_frozen(self):
        got = vaemath.elbo_decomposition(*latents(4, 2))
        with pytest.raises(AttributeError):
            got.mutual_information = 0.0  # type: ignore[misc]


class TestConvergence:
    """The batch-mean estimate approaches the truth as B grows (both methods)."""

    # Linear-Gaussian encoder z = A x + s eps, x ~ N(0, I_2): q(z) = N(0, A A^T + S).
    A = np.array([[1.0, 0.0], [0.6, 0.8], [0.5, -0.4]])
    S2 = np.array([0.25, 0.16, 0.36])

    def truth(self):
        cov = self.A @ self.A.T + np.diag(self.S2)
        logdet = np.linalg.slogdet(cov)[1]
        var = np.diag(cov)
        mi = 0.5 * logdet - 0.5 * np.log(self.S2).sum()
        tc = 0.5 * np.log(var).sum() - 0.5 * logdet
        dwkl = 0.5 * (var - 1.0 - np.log(var)).sum()
        return np.array([mi, tc, dwkl])

    def mean_estimate(self, b, repeats, dataset_size, method, seed):
        rng = np.random.default_rng(seed)
        est = []
        for _ in range(repeats):
            mu = rng.normal(size=(b, 2)) @ self.A.T
            logvar = np.log(self.S2) * np.ones((b, 3))
            z = mu + np.sqrt(self.S2) * rng.normal(size=(b, 3))
            t = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=dataset_size, method=method)
            est.append([t.mutual_information, t.total_correlation, t.dimensionwise_kl])
        return np.mean(est, axis=0)

    @pytest.mark.slow
    @pytest.mark.parametrize(
        ("dataset_size", "method"),
        [
            pytest.param(None, "mws", id="batch mixture"),
            pytest.param(10**6, "mws", id="mws"),
            pytest.param(10**6, "mss", id="mss"),
        ],
    )
    def test_linear_gaussian(self, dataset_size, method):
        # Measured: standard error of the mean of 4 batches at B=2048 is <= 0.011
        # per term and the bias is <= 0.016, so 0.06 is ~4 SE + bias; at B=128
        # the summed absolute error is 0.07-0.16 and must shrink.
        truth = self.truth()
        small = self.mean_estimate(128, 16, dataset_size, method, seed=10)
        large = self.mean_estimate(2048, 4, dataset_size, method, seed=11)
        assert np.all(np.abs(large - truth) < 0.06), (large, truth)
        assert np.abs(large - truth).sum() < np.abs(small - truth).sum()

    @pytest.mark.parametrize("method", METHODS)
    def test_finite_dataset(self, method):
        # Exact full-dataset values for fixed samples z_n ~ q(z|x_n), n < N:
        # q(z) = (1/N) sum_n q(z|x_n), by brute force. Random batches (without
        # replacement, each z_i with its own x_i) must approach them as B grows.
        n = 60
        z, mu, logvar = latents(n, 3, seed=5)
        mu = mu * 2.0
        z = mu + np.exp(0.5 * logvar) * np.random.default_rng(6).normal(size=(n, 3))
        _, _, exact = brute_force(z, mu, logvar, np.full((n, n), 1.0 / n))
        rng = np.random.default_rng(7)
        errors = []
        for b in (8, 24, 50):
            est = []
            for _ in range(200):
                idx = rng.permutation(n)[:b]
                t = vaemath.elbo_decomposition(
                    z[idx], mu[idx], logvar[idx], dataset_size=n, method=method
                )
                est.append([t.mutual_information, t.total_correlation, t.dimensionwise_kl])
            errors.append(np.abs(np.mean(est, axis=0) - np.array(exact)).sum())
        # Measured (summed |error| of the three terms): mws 1.85 / - / 0.057. The
        # bias of a log of a mixture estimate falls roughly like 1/B; the
        # standard error of 200 batches is ~0.01 per term.
        assert errors[2] < 0.5 * errors[1] < 0.5 * errors[0], errors
        assert errors[2] < 0.15, errors

    def test_whole_dataset_batch_is_exact(self):
        # MWS with B = N over the whole dataset is the exact full-dataset value.
        z, mu, logvar = latents(60, 3, seed=8)
        _, _, exact = brute_force(z, mu, logvar, np.full((60, 60), 1.0 / 60))
        perm = np.random.default_rng(9).permutation(60)
        t = vaemath.elbo_decomposition(z[perm], mu[perm], logvar[perm], dataset_size=60)
        np.testing.assert_allclose(
            [t.mutual_information, t.total_correlation, t.dimensionwise_kl], exact, rtol=1e-12
        )


class TestGradients:
    @pytest.mark.parametrize(("dataset_size", "method"), SIZES[:1] + SIZES[4:6])
    def test_gradcheck(self, tile, dataset_size, method):
        torch = pytest.importorskip("torch")
        b = 7
        z, mu, logvar = latents(b, 3, seed=2)
        inputs = tuple(torch.tensor(a, requires_grad=True) for a in (z, mu, logvar))

        def terms(*args):
            t = vaemath.elbo_decomposition(*args, dataset_size=dataset_size, method=method)
            return t.mutual_information, t.total_correlation, t.dimensionwise_kl

        def per_sample(*args):
            kw = {"dataset_size": dataset_size, "method": method}
            return (
                vaemath.log_aggregate_posterior(*args, **kw),
                vaemath.log_marginal_aggregate_posterior(*args, **kw),
            )

        assert torch.autograd.gradcheck(terms, inputs)
        assert torch.autograd.gradcheck(per_sample, inputs)

    def test_matches_naive_autograd_float32(self):
        # Against torch autograd through the (B, B, D) formula (float64 reference).
        torch = pytest.importorskip("torch")
        z, mu, logvar = latents(96, 6, seed=12)
        w = torch.tensor(np.log(weight_matrix(96, 5000, "mss")))

        def naive(z, mu, logvar):
            dens = torch.distributions.Normal(mu[None], torch.exp(0.5 * logvar[None])).log_prob(
                z[:, None]
            )
            lq = torch.logsumexp(dens.sum(-1) + w, dim=1)
            lqd = torch.logsumexp(dens + w[:, :, None], dim=1)
            return (lq.sum() * 0.3 - lqd.sum() * 0.7) / 96

        ref = [torch.tensor(a, requires_grad=True) for a in (z, mu, logvar)]
        naive(*ref).backward()
        got = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in (z, mu, logvar)]
        kw = {"dataset_size": 5000, "method": "mss"}
        lq = vaemath.log_aggregate_posterior(*got, **kw)
        lqd = vaemath.log_marginal_aggregate_posterior(*got, **kw)
        ((lq.sum() * 0.3 - lqd.sum() * 0.7) / 96).backward()
        for a, r in zip(got, ref, strict=True):
            assert a.grad.dtype == torch.float32
            scale = float(r.grad.abs().max())
            np.testing.assert_allclose(a.grad.numpy(), r.grad.numpy(), rtol=0, atol=1e-5 * scale)

    def test_memory_ceiling_forward_backward(self):
        # B=4096, D=64, float32: a (B, B, D) array alone is 4.3 GB; the bar is
        # 2 GiB resident for forward + backward, torch included.
        pytest.importorskip("torch")
        script = textwrap.dedent(
            """
            import resource, torch, vaemath
            torch.set_num_threads(1)  # robust timing on a shared CPU; memory is unaffected
            g = torch.Generator().manual_seed(0)
            mu = torch.randn(4096, 64, generator=g).requires_grad_()
            logvar = (torch.rand(4096, 64, generator=g) * 4 - 5).requires_grad_()
            z = mu + torch.exp(0.5 * logvar) * torch.randn(4096, 64, generator=g)
            t = vaemath.elbo_decomposition(z, mu, logvar, dataset_size=50000, method="mss")
            t.kl.backward()
            assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()
            # VmHWM is this process image's own peak; ru_maxrss can carry the
            # parent's (pytest's) resident size over the fork + exec.
            peak = None
            try:
                with open("/proc/self/status") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            peak = int(line.split()[1])
            except OSError:
                pass
            print(peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        peak_kib = int(out.stdout.split()[-1])
        assert peak_kib < 2 * 1024**2, f"peak RSS {peak_kib / 1024**2:.2f} GiB"


class TestDatasetDecomposition:
    def reference(self, mu, logvar, num_samples, seed, prior_logvar=0.0):
        rng = np.random.default_rng(seed)
        n, d = mu.shape
        z = np.concatenate(
            [mu + np.exp(0.5 * logvar) * rng.standard_normal((n, d)) for _ in range(num_samples)]
        )
        reps = (num_samples, 1)
        dens = norm.logpdf(z[:, None, :], mu[None], np.exp(0.5 * logvar[None]))
        lq = logsumexp(dens.sum(-1), axis=1) - math.log(n)
        lqd = logsumexp(dens, axis=1) - math.log(n)
        lqzx = norm.logpdf(z, np.tile(mu, reps), np.exp(0.5 * np.tile(logvar, reps))).sum(-1)
        lpz = norm.logpdf(z, 0.0, math.exp(0.5 * prior_logvar)).sum(-1)
        return np.mean(lqzx - lq), np.mean(lq - lqd.sum(-1)), np.mean(lqd.sum(-1) - lpz)

    def test_subsampled_queries(self, xp, asarray):
        # Reference: the query points and noise of the contract, densities by brute force.
        _, mu, logvar = latents(40, 3, seed=17)
        prior_mu = np.linspace(-1, 1, 40)[:, None]  # a per-point prior, taken at the owners
        rng = np.random.default_rng(9)
        points = np.sort(rng.choice(40, size=15, replace=False))
        eps = rng.standard_normal((2, 15, 3)).reshape(-1, 3)
        owner = np.tile(points, 2)
        z = mu[owner] + np.exp(0.5 * logvar[owner]) * eps
        dens = norm.logpdf(z[:, None, :], mu[None], np.exp(0.5 * logvar[None]))
        lq = logsumexp(dens.sum(-1), axis=1) - math.log(40)
        lqd = logsumexp(dens, axis=1) - math.log(40)
        lqzx = norm.logpdf(z, mu[owner], np.exp(0.5 * logvar[owner])).sum(-1)
        lpz = norm.logpdf(z, prior_mu[owner], 1.0).sum(-1)
        expected = (np.mean(lqzx - lq), np.mean(lq - lqd.sum(-1)), np.mean(lqd.sum(-1) - lpz))
        got = vaemath.dataset_decomposition(
            asarray(mu), asarray(logvar), asarray(prior_mu), 0.0, num_samples=2, seed=9,
            num_queries=15,
        )  # fmt: skip
        for value, ref in zip(
            (got.mutual_information, got.total_correlation, got.dimensionwise_kl), expected,
            strict=True,
        ):  # fmt: skip
            assert float(value) == pytest.approx(ref, rel=1e-10, abs=1e-12)

    def test_all_queries_is_the_exact_computation(self):
        _, mu, logvar = latents(25, 2, seed=3)
        exact = vaemath.dataset_decomposition(mu, logvar, seed=4)
        same = vaemath.dataset_decomposition(mu, logvar, seed=4, num_queries=25)
        assert float(exact.kl) == float(same.kl)

    @pytest.mark.parametrize("bad", [0, 26, 2.5, "10"])
    def test_bad_num_queries(self, bad):
        _, mu, logvar = latents(25, 2, seed=3)
        with pytest.raises(ValueError, match="num_queries"):
            vaemath.dataset_decomposition(mu, logvar, num_queries=bad)

    @pytest.mark.parametrize(
        ("num_samples", "chunk_size"),
        [
            pytest.param(1, None, id="S=1"),
            pytest.param(3, 7, id="S=3 chunk 7"),
            pytest.param(2, 1, id="S=2 chunk 1"),
        ],
    )
    def test_brute_force(self, xp, asarray, num_samples, chunk_size):
        if "jax" in xp.__name__ and chunk_size is not None:
            pytest.skip("eager JAX recompiles per tile shape; chunking is covered elsewhere")
        _, mu, logvar = latents(30, 3, seed=13)
        expected = self.reference(mu, logvar, num_samples, seed=5, prior_logvar=0.4)
        calls = []
        got = vaemath.dataset_decomposition(
            asarray(mu), asarray(logvar), 0.0, 0.4,
            num_samples=num_samples, seed=5, chunk_size=chunk_size,
            progress=lambda done, total: calls.append((done, total)),
        )  # fmt: skip
        for value, ref in zip(
            (got.mutual_information, got.total_correlation, got.dimensionwise_kl),
            expected,
            strict=True,
        ):
            assert_close(value, ref, xp=xp, dtype=xp.float64, shape=(), rtol=1e-12)
        assert calls[-1] == (30 * num_samples, 30 * num_samples)
        assert all(a[0] < b[0] for a, b in itertools.pairwise(calls))

    def test_float32_and_progress_bar(self, capsys):
        torch = pytest.importorskip("torch")
        _, mu, logvar = latents(300, 4, seed=14)
        expected = self.reference(mu, logvar, 1, seed=0)
        mu_t = torch.tensor(mu, dtype=torch.float32, requires_grad=True)
        got = vaemath.dataset_decomposition(
            mu_t, torch.tensor(logvar, dtype=torch.float32), progress=True
        )
        assert got.mutual_information.dtype == torch.float32
        np.testing.assert_allclose(
            [float(got.mutual_information), float(got.total_correlation)],
            expected[:2],
            rtol=1e-5,
            atol=1e-5,
        )
        err = capsys.readouterr().err
        assert "dataset_decomposition: 100%" in err
        assert "300/300" in err
        assert err.endswith("\n")
        assert "\r" not in err  # captured stderr is not a terminal: one final line


class TestBadInput:
    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            pytest.param({"dataset_size": 3}, ValueError, "at least the batch size", id="N < B"),
            pytest.param({"method": "iwae"}, ValueError, "`method` must be one of", id="method"),
            pytest.param({"dataset_size": 2.5}, ValueError, "whole number", id="float N"),
        ],
    )
    def test_options(self, kwargs, error, match):
        z, mu, logvar = latents(5, 2)
        with pytest.raises(error, match=match):
            vaemath.elbo_decomposition(z, mu, logvar, **kwargs)

    def test_batch_of_one(self):
        z, mu, logvar = latents(1, 2)
        with pytest.raises(ValueError, match="at least 2 samples"):
            vaemath.mutual_information(z, mu, logvar, dataset_size=10, method="mss")
        # Without dataset_size a single sample is its own mixture: MI = 0.
        assert float(vaemath.mutual_information(z, mu, logvar)) == pytest.approx(0.0, abs=1e-12)

    @pytest.mark.parametrize(
        ("shapes", "match"),
        [
            pytest.param([(4, 2), (4, 3), (4, 2)], "broadcast to the shape", id="mismatch"),
            pytest.param([(4,), (4,), (4,)], r"shape \(B, D\)", id="1-d"),
            pytest.param([(4, 2, 1)] * 3, r"shape \(B, D\)", id="3-d"),
        ],
    )
    def test_shapes(self, shapes, match):
        z, mu, logvar = (np.zeros(s) for s in shapes)
        with pytest.raises(ValueError, match=match):
            vaemath.total_correlation(z, mu, logvar)

    def test_prior_shape(self):
        z, mu, logvar = latents(4, 2)
        with pytest.raises(ValueError, match="broadcast"):
            vaemath.dimensionwise_kl(z, mu, logvar, np.zeros(3))

    def test_dataset_inputs(self):
        with pytest.raises(ValueError, match=r"shape \(N, D\)"):
            vaemath.dataset_decomposition(np.zeros(4), np.zeros(4))
        with pytest.raises(ValueError, match="num_samples"):
            vaemath.dataset_decomposition(np.zeros((4, 2)), np.zeros((4, 2)), num_samples=0)

    def test_nan_propagates(self):
        z, mu, logvar = latents(6, 2)
        z[2, 1] = np.nan
        t = vaemath.elbo_decomposition(z, mu, logvar)
        assert np.isnan(t.mutual_information)
        lq = vaemath.log_aggregate_posterior(z, mu, logvar)
        assert np.isnan(lq[2])
        assert np.all(np.isfinite(np.delete(lq, 2)))


class TestPaperNormaliser:
    """The docstring's claim about the published log(B N) normaliser, checked.

    A direct NumPy implementation of the published MWS estimator
    (``logsumexp_j log q(z_i|x_j) - log(B N)``) against vaemath's MWS with
    ``dataset_size=N``: the TC rise is ``sum_d delta_d - delta``, about
    ``(D - 1) log N`` when other points dominate every density and
    ``(D - 1) log B`` when the own component dominates every density.
    """

    @staticmethod
    def paper_tc(z, mu, logvar, n):
        from scipy.special import logsumexp

        b = z.shape[0]
        dens = -0.5 * (
            np.log(2 * np.pi) + logvar[None] + (z[:, None] - mu[None]) ** 2 / np.exp(logvar[None])
        )  # (B, B, D)
        joint = logsumexp(dens.sum(-1), axis=1) - np.log(b * n)
        marg = logsumexp(dens, axis=1) - np.log(b * n)
        return float(np.mean(joint - marg.sum(-1)))

    @pytest.mark.parametrize(
        ("logvar_value", "spread", "regime"),
        [
            pytest.param(0.0, 0.1, "others", id="broad posteriors: (D-1) log N"),
            pytest.param(-12.0, 100.0, "own", id="narrow posteriors: (D-1) log B"),
        ],
    )
    def test_tc_rise(self, logvar_value, spread, regime):
        rng = np.random.default_rng(3)
        b, d, n = 64, 5, 100_000
        mu = spread * rng.normal(size=(b, d))
        logvar = np.full((b, d), logvar_value)
        z = mu + np.exp(0.5 * logvar) * rng.normal(size=(b, d))
        ours = float(vaemath.total_correlation(z, mu, logvar, dataset_size=n))
        rise = self.paper_tc(z, mu, logvar, n) - ours
        upper = np.log(b * (n - 1) / (b - 1))
        expected = (d - 1) * (upper if regime == "others" else np.log(b))
        assert abs(rise - expected) < 0.05 * expected, (rise, expected)


class TestJaxDefaultPrecision:
    """JAX as users get it by default (x64 off): float32, no dtype warnings."""

    def test_estimators_with_dataset_size_no_warning(self):
        import subprocess
        import sys

        pytest.importorskip("jax")
        code = (
            "import warnings; warnings.simplefilter('error');"
            "import jax; jax.config.update('jax_enable_x64', False);"
            "import jax.numpy as jnp, numpy as np, vaemath;"
            "rng = np.random.default_rng(0);"
            "mu = jnp.asarray(rng.normal(size=(16, 3)), dtype=jnp.float32);"
            "lv = jnp.zeros((16, 3), dtype=jnp.float32);"
            "r = vaemath.elbo_decomposition(mu, mu, lv, dataset_size=100, method='mss');"
            "t = vaemath.total_correlation(mu, mu, lv, dataset_size=100);"
            "k = vaemath.gaussian_kl(mu, lv);"
            "assert r.kl.dtype == jnp.float32 and t.dtype == jnp.float32, (r.kl.dtype, t.dtype);"
            "assert k.dtype == jnp.float32;"
            "ref = vaemath.elbo_decomposition(np.asarray(mu, dtype=np.float64),"
            " np.asarray(mu, dtype=np.float64), np.zeros((16, 3)), dataset_size=100, method='mss');"
            "assert abs(float(r.kl) - float(ref.kl)) < 1e-4 * (1 + abs(float(ref.kl)));"
            "print('ok')"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"
        assert "Explicitly requested dtype" not in out.stderr
