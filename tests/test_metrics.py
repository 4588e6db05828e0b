"""Tests of the disentanglement metrics: the Mutual Information Gap and active units.

References: quadrature of one-dimensional Gaussian-mixture entropies (the
closed-form truth of a designed encoder), a brute-force float64 re-implementation
of the mixture estimator (full ``(M, N)`` log-density matrices and
``scipy.special.logsumexp``, on the same samples, which the contract fixes as a
function of ``seed``), and disentanglement_lib's histogram protocol re-written
from its definition with ``np.histogram`` / ``np.digitize`` and scikit-learn's
``mutual_info_score``.

Randomized statistical tests
----------------------------
The closed-form tests are Monte Carlo estimates with fixed seeds; their
tolerance is four standard errors of the estimate, computed in the test from
an independent sample of the integrand, so a failure after changing the seeds
alone is a ~1e-4 event to investigate, not to retry.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import logsumexp

import vaemath
from vaemath._lib._testing import assert_close, to_numpy

# -- references ------------------------------------------------------------------------


def mixture_entropy(means: np.ndarray, scale: float) -> float:
    """Entropy (nats) of the equal-weight 1-D mixture of N(m, scale^2), by quadrature."""

    def density(x: float) -> float:
        return float(np.mean(stats.norm.pdf(x, means, scale)))

    def integrand(x: float) -> float:
        p = density(x)
        return -p * math.log(p) if p > 0 else 0.0

    lo, hi = means.min() - 12 * scale, means.max() + 12 * scale
    breaks = np.sort(means)
    return integrate.quad(integrand, lo, hi, points=breaks[:50], limit=500)[0]


def brute_force_information(mu, logvar, factors, *, num_samples, seed, num_queries=None):
    """I(z_j; v_k) by the mixture estimator with full (M, N) matrices, float64."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    n, d = mu.shape
    rng = np.random.default_rng(seed)
    points = np.arange(n) if num_queries is None else np.sort(rng.choice(n, num_queries, False))
    noise = rng.standard_normal((num_samples, points.shape[0], d))
    owner = np.tile(points, num_samples)
    z = mu[owner] + np.exp(0.5 * logvar[owner]) * noise.reshape(-1, d)
    info = np.zeros((d, factors.shape[1]))
    for j in range(d):
        dens = stats.norm.logpdf(z[:, j, None], mu[None, :, j], np.exp(0.5 * logvar[None, :, j]))
        marginal = logsumexp(dens, axis=1) - math.log(n)
        for k in range(factors.shape[1]):
            same = factors[owner, k][:, None] == factors[None, :, k]
            cond = logsumexp(np.where(same, dens, -np.inf), axis=1) - np.log(same.sum(1))
            info[j, k] = np.mean(cond - marginal)
    return info


def disentanglement_lib_mig(mus: np.ndarray, ys: np.ndarray, num_bins: int) -> tuple:
    """disentanglement_lib's ``compute_mig`` on ``(D, N)`` means and ``(K, N)`` labels."""
    from sklearn.metrics import mutual_info_score

    discretized = np.zeros_like(mus)
    for i in range(mus.shape[0]):
        edges = np.histogram(mus[i, :], num_bins)[1]
        discretized[i, :] = np.digitize(mus[i, :], edges[:-1])
    m = np.array(
        [
            [mutual_info_score(ys[j], discretized[i]) for j in range(ys.shape[0])]
            for i in range(mus.shape[0])
        ]
    )
    entropy = np.array([mutual_info_score(ys[j], ys[j]) for j in range(ys.shape[0])])
    sorted_m = np.sort(m, axis=0)[::-1]
    return m, entropy, np.mean((sorted_m[0] - sorted_m[1]) / entropy)


def designed_encoder(values: int, per_value: int, c: float, s: float, seed: int = 1):
    """Factor with ``values`` equally likely values; z_0 | v=a ~ N(c a, s^2); z_1 pure noise."""
    v = np.repeat(np.arange(values), per_value)
    rng = np.random.default_rng(seed)
    mu = np.stack([c * v, rng.standard_normal(v.shape[0])], axis=1)
    logvar = np.stack([np.full(v.shape[0], 2 * math.log(s)), np.full(v.shape[0], -2.0)], axis=1)
    return mu, logvar, v[:, None]


# -- the mixture estimator ---------------------------------------------------------------


class TestMutualInformationGap:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_closed_form_truth(self, xp, asarray, dtype):
        values, c, s, num_samples = 4, 1.0, 0.5, 4
        mu, logvar, v = designed_encoder(values, 250, c, s)
        truth = mixture_entropy(c * np.arange(values), s) - 0.5 * math.log(
            2 * math.pi * math.e * s * s
        )
        out = vaemath.mutual_information_gap(
            asarray(mu, dtype), asarray(logvar, dtype), v, num_samples=num_samples
        )
        # standard error from an independent sample of the integrand log q(z|a) - log q(z)
        rng = np.random.default_rng(99)
        a = rng.integers(0, values, 200_000)
        z = c * a + s * rng.standard_normal(a.shape[0])
        comps = stats.norm.logpdf(z[:, None], c * np.arange(values)[None, :], s)
        integrand = comps[np.arange(a.shape[0]), a] - (logsumexp(comps, axis=1) - math.log(values))
        se = integrand.std() / math.sqrt(mu.shape[0] * num_samples)
        info = to_numpy(out.mutual_information)
        assert out.mutual_information.dtype == getattr(xp, dtype)
        assert tuple(out.mutual_information.shape) == (2, 1)
        assert abs(info[0, 0] - truth) < 4 * se, (info[0, 0], truth, se)
        assert abs(info[1, 0]) < 0.02  # the noise latent carries nothing
        assert_close(out.factor_entropy, asarray([math.log(values)], dtype), xp=xp)
        gap = (info[0, 0] - info[1, 0]) / math.log(values)
        assert_close(out.gap, asarray([gap], dtype), xp=xp)
        assert out.score.shape == ()

    @pytest.mark.parametrize(
        ("num_samples", "num_queries", "logvar_spread"),
        [
            pytest.param(1, None, False, id="all points"),
            pytest.param(3, 70, False, id="subset, three samples"),
            pytest.param(2, None, True, id="extreme log-variances (exact path)"),
        ],
    )
    def test_matches_brute_force(self, num_samples, num_queries, logvar_spread):
        rng = np.random.default_rng(3)
        n, d = 240, 3
        factors = np.stack(
            [rng.integers(0, 2, n), rng.integers(0, 30, n), rng.integers(-5, 5, n) * 1000], 1
        )
        mu = rng.standard_normal((n, d)) + factors[:, :1]
        logvar = rng.uniform(-3, 0.5, (n, d))
        if logvar_spread:  # rows far below the density bound take the exact path
            logvar[::5, 1] = -150.0
            logvar[1::7, 2] = 40.0
        out = vaemath.mutual_information_gap(
            mu, logvar, factors, num_samples=num_samples, num_queries=num_queries, seed=5
        )
        ref = brute_force_information(
            mu, logvar, factors, num_samples=num_samples, seed=5, num_queries=num_queries
        )
        np.testing.assert_allclose(out.mutual_information, ref, rtol=1e-9, atol=1e-11)

    @pytest.mark.parametrize("library", ["numpy", "torch"])
    @pytest.mark.parametrize("engine", ["eager", "compiled", "compiled, blocks"])
    def test_engine_paths_match_brute_force(self, library, engine, monkeypatch):
        """Every engine of ``_groups.log_sums_by_group``: eager tiles summing the
        small factors' groups by the indicator product; the fused sums of
        ``_compiled_groups`` (forced on this small problem by ``VAEMATH_COMPILE=1``)
        with every group a call of its own, or with the two smallest factors'
        groups summed from blocks of components (``MIN_BLOCK_CHUNKS`` lowered so
        that blocks of a few components qualify) and the third's as calls; with
        several row tiles and padded component chunks; rows far below the bound
        take the exact path."""
        torch = pytest.importorskip("torch")
        from vaemath._estimators import _compiled, _groups, _tiles

        compiled = engine != "eager"
        if compiled:
            try:
                torch.compile(lambda x: x.exp().sum(), fullgraph=True)(torch.ones(3))
            except Exception:
                pytest.skip("torch.compile cannot build kernels here (no C++ compiler?)")
        monkeypatch.setenv("VAEMATH_COMPILE", "1" if compiled else "0")
        monkeypatch.setattr(_tiles, "_TILE_ELEMENTS", 256)
        monkeypatch.setattr(_groups, "_CHUNK", 32)
        monkeypatch.setattr(_compiled, "_TILE_TERMS", 16 * 48 * 3)
        monkeypatch.setattr(_compiled, "_CHUNK", 48)
        block_calls = []
        if compiled:
            from vaemath._estimators import _compiled_groups

            real = _compiled_groups.fused_log_sums

            def spy(z, mu, logvar, codes, own_codes, **kw):
                block_calls.append(None if codes is None else codes.shape[1])
                return real(z, mu, logvar, codes, own_codes, **kw)

            monkeypatch.setattr(_compiled_groups, "fused_log_sums", spy)
            if engine == "compiled, blocks":  # 2 and 6 blocks of 110 components pass, 120 not
                monkeypatch.setattr(_compiled_groups, "MIN_BLOCK_CHUNKS", 0.3)
        rng = np.random.default_rng(4)
        n, d = 110, 3
        factors = np.stack(
            [rng.integers(0, 2, n), rng.integers(0, 3, n), rng.integers(0, 20, n)], 1
        )
        mu = rng.standard_normal((n, d)) + factors[:, :1]
        logvar = rng.uniform(-3, 0.5, (n, d))
        logvar[::5, 1] = -150.0  # these rows take the exact path
        conv = np.asarray if library == "numpy" else torch.from_numpy
        out = vaemath.mutual_information_gap(conv(mu), conv(logvar), factors, num_samples=2, seed=3)
        ref = brute_force_information(mu, logvar, factors, num_samples=2, seed=3)
        np.testing.assert_allclose(to_numpy(out.mutual_information), ref, rtol=1e-9, atol=1e-11)
        if engine == "compiled":
            assert block_calls
            assert set(block_calls) == {None}
        elif engine == "compiled, blocks":
            assert block_calls[0] == 2  # the shared pass, in blocks of factors 0 and 1
            assert set(block_calls[1:]) == {None}  # factor 2's groups: calls of their own

    def test_same_samples_on_every_backend(self, xp, asarray):
        mu, logvar, v = designed_encoder(3, 40, 1.5, 0.4)
        factors = np.concatenate([v, np.arange(120)[:, None] % 2], 1)
        ref = vaemath.mutual_information_gap(
            mu, logvar, factors, num_samples=2, seed=11, num_queries=90
        )
        out = vaemath.mutual_information_gap(
            asarray(mu), asarray(logvar), factors, num_samples=2, seed=11, num_queries=90
        )
        np.testing.assert_allclose(
            to_numpy(out.mutual_information), ref.mutual_information, rtol=1e-10, atol=1e-12
        )
        other = vaemath.mutual_information_gap(
            mu, logvar, factors, num_samples=2, seed=12, num_queries=90
        )
        assert not np.allclose(other.mutual_information, ref.mutual_information)

    def test_disentangled_entangled_duplicated(self):
        rng = np.random.default_rng(0)
        n = 1200
        v = np.stack([rng.integers(0, 4, n), rng.integers(0, 5, n)], axis=1)
        lv = np.full((n, 3), math.log(0.05**2))
        clean = np.stack([v[:, 0], v[:, 1], rng.standard_normal(n)], axis=1).astype(float)
        rotated = clean.copy()
        rotated[:, :2] = clean[:, :2] @ np.array([[1.0, 1.0], [1.0, -1.0]]) / math.sqrt(2)
        duplicated = np.stack([v[:, 0], v[:, 0], v[:, 1]], axis=1).astype(float)
        disentangled = vaemath.mutual_information_gap(clean, lv, v)
        entangled = vaemath.mutual_information_gap(rotated, lv, v)
        copies = vaemath.mutual_information_gap(duplicated, lv, v)
        assert float(disentangled.score) > 0.9
        assert float(entangled.score) < 0.3
        assert float(copies.gap[0]) < 0.05  # two latents carry factor 0 equally
        assert float(copies.gap[1]) > 0.9
        # I(z_j; v_k) <= H(v_k) up to Monte Carlo error
        assert np.all(np.asarray(disentangled.mutual_information) < np.log([4, 5]) + 0.05)

    def test_labels_compared_for_equality_only(self):
        mu, logvar, v = designed_encoder(3, 50, 1.0, 0.5)
        base = vaemath.mutual_information_gap(mu, logvar, v)
        relabelled = np.array([-7, 10**12, 5])[v]  # negative, large, non-contiguous
        floats = v.astype(np.float32) * 2.0 - 1.0  # integral floats (dSprites ships floats)
        for labels in (relabelled, floats, v.astype(np.uint8)):
            other = vaemath.mutual_information_gap(mu, logvar, labels)
            np.testing.assert_array_equal(other.mutual_information, base.mutual_information)

    def test_factors_in_mu_library(self, xp, asarray):
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        ref = vaemath.mutual_information_gap(mu, logvar, v)
        out = vaemath.mutual_information_gap(asarray(mu), asarray(logvar), asarray(v))
        np.testing.assert_allclose(
            to_numpy(out.mutual_information), ref.mutual_information, rtol=1e-10
        )

    def test_single_valued_factor(self):
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        factors = np.concatenate([v, np.full_like(v, 4)], axis=1)
        out = vaemath.mutual_information_gap(mu, logvar, factors)
        assert math.isnan(float(out.gap[1]))
        assert float(out.factor_entropy[1]) == 0.0
        assert float(out.score) == pytest.approx(float(out.gap[0]), rel=1e-12)
        with pytest.raises(ValueError, match="single value"):
            vaemath.mutual_information_gap(mu, logvar, factors[:, 1:])

    @pytest.mark.parametrize("estimator", ["mixture", "histogram"])
    def test_nan_in_nan_out(self, estimator):
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        mu[4, 1] = np.nan
        out = vaemath.mutual_information_gap(mu, logvar, v, estimator=estimator)
        assert math.isnan(float(out.score))
        assert np.isnan(np.asarray(out.mutual_information)[1, 0])

    def test_torch_is_detached(self):
        torch = pytest.importorskip("torch")
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        mu_t = torch.tensor(mu, requires_grad=True)
        out = vaemath.mutual_information_gap(mu_t, torch.tensor(logvar), torch.tensor(v))
        assert not out.score.requires_grad
        assert out.mutual_information.dtype == torch.float64
        assert mu_t.requires_grad

    def test_progress(self, capsys):
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        calls = []
        vaemath.mutual_information_gap(
            mu, logvar, v, progress=lambda done, total: calls.append((done, total))
        )
        assert calls
        assert calls[-1][0] == calls[-1][1]
        assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
        vaemath.mutual_information_gap(mu, logvar, v, progress=True)
        assert "mutual_information_gap" in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            pytest.param(
                {"estimator": "bins"}, ValueError, "'mixture', 'histogram'", id="estimator"
            ),
            pytest.param({"num_samples": 0}, ValueError, "num_samples", id="num_samples"),
            pytest.param({"num_bins": 1}, ValueError, "num_bins", id="num_bins"),
            pytest.param({"num_queries": 0}, ValueError, "num_queries", id="no queries"),
            pytest.param({"num_queries": 9.5}, ValueError, "num_queries", id="float queries"),
            pytest.param({"num_queries": 91}, ValueError, "at most N = 90", id="too many queries"),
            pytest.param({"num_samples": 1.5}, TypeError, "num_samples", id="float samples"),
            pytest.param({"progress": "yes"}, TypeError, "progress", id="progress"),
        ],
    )
    def test_bad_options(self, kwargs, error, match):
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        with pytest.raises(error, match=match):
            vaemath.mutual_information_gap(mu, logvar, v, **kwargs)

    @pytest.mark.parametrize(
        ("change", "match"),
        [
            pytest.param(
                lambda m, lv, v: (m, lv, v[:-1]), "one row per encoded point", id="length"
            ),
            pytest.param(lambda m, lv, v: (m, lv, v[:, 0]), "shape \\(N, K\\)", id="1-d factors"),
            pytest.param(lambda m, lv, v: (m, lv, v + 0.5), "integral", id="fractional"),
            pytest.param(lambda m, lv, v: (m[:, :1], lv[:, :1], v), "two latents", id="one latent"),
            pytest.param(lambda m, lv, v: (m, lv[:, :1], v), "one non-empty shape", id="logvar"),
        ],
    )
    def test_bad_inputs(self, change, match):
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        with pytest.raises(ValueError, match=match):
            vaemath.mutual_information_gap(*change(mu, logvar, v))

    def test_factors_from_a_third_library(self):
        torch = pytest.importorskip("torch")
        mu, logvar, v = designed_encoder(3, 30, 1.0, 0.5)
        with pytest.raises(TypeError, match="same library"):
            vaemath.mutual_information_gap(mu, logvar, torch.tensor(v))

    def test_memory_bounded_in_a_subprocess(self):
        code = textwrap.dedent(
            """
            import resource, numpy as np, vaemath
            n, d = 20_000, 10
            rng = np.random.default_rng(0)
            mu, lv = rng.standard_normal((n, d)), rng.uniform(-3, 0, (n, d))
            f = np.stack([rng.integers(0, a, n) for a in (3, 6, 40, 32, 32)], 1)
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            vaemath.mutual_information_gap(mu[:2000], lv[:2000], f[:2000])
            warm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            vaemath.mutual_information_gap(mu, lv, f, num_queries=2000)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print((peak - base) / 1024)
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
        )
        assert out.returncode == 0, out.stderr
        grown_mib = float(out.stdout.strip())
        assert grown_mib < 1024, grown_mib  # an (N, N) float64 alone would be 3,052 MiB


# -- the histogram estimator -------------------------------------------------------------


class TestHistogramMIG:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_matches_disentanglement_lib(self, xp, asarray, dtype):
        pytest.importorskip("sklearn")
        rng = np.random.default_rng(2)
        n = 3000
        factors = np.stack(
            [rng.integers(0, 3, n), rng.integers(0, 6, n), rng.integers(0, 40, n)], 1
        )
        mu = np.stack(
            [
                factors[:, 0] + 0.3 * rng.standard_normal(n),
                factors[:, 2] / 7 + 0.1 * rng.standard_normal(n),
                rng.standard_normal(n),
                np.full(n, 0.25),
            ],
            axis=1,
        ).astype(dtype)
        out = vaemath.mutual_information_gap(
            asarray(mu), asarray(np.zeros_like(mu)), factors, estimator="histogram", num_bins=20
        )
        m, entropy, mig = disentanglement_lib_mig(mu.astype(np.float64).T, factors.T, 20)
        assert out.mutual_information.dtype == getattr(xp, dtype)
        rtol = 1e-12 if dtype == "float64" else 1e-6
        np.testing.assert_allclose(to_numpy(out.mutual_information), m, rtol=rtol, atol=1e-12)
        np.testing.assert_allclose(to_numpy(out.factor_entropy), entropy, rtol=rtol)
        assert float(out.score) == pytest.approx(mig, rel=rtol)

    def test_perfect_and_duplicated_encoders(self):
        rng = np.random.default_rng(5)
        factors = np.stack([rng.integers(0, 8, 2000), rng.integers(0, 5, 2000)], 1)
        noise = rng.standard_normal((2000, 1))
        perfect = vaemath.mutual_information_gap(
            np.concatenate([factors * 1.0, noise], 1),
            np.zeros((2000, 3)),
            factors,
            estimator="histogram",
        )
        np.testing.assert_allclose(
            np.diag(perfect.mutual_information[:2]), np.log([8, 5]), rtol=0.02
        )
        assert float(perfect.score) > 0.95
        twice = np.concatenate([factors[:, :1], factors[:, :1], factors[:, 1:]], 1) * 1.0
        copies = vaemath.mutual_information_gap(twice, twice, factors, estimator="histogram")
        assert float(copies.gap[0]) == 0.0  # identical columns, identical tables

    def test_subset_is_the_sampled_points(self):
        pytest.importorskip("sklearn")
        rng = np.random.default_rng(4)
        factors = rng.integers(0, 5, (500, 2))
        mu = factors + 0.5 * rng.standard_normal((500, 2))
        out = vaemath.mutual_information_gap(
            mu, mu, factors, estimator="histogram", num_queries=200, seed=3
        )
        points = np.sort(np.random.default_rng(3).choice(500, 200, replace=False))
        m, _, mig = disentanglement_lib_mig(mu[points].T, factors[points].T, 20)
        np.testing.assert_allclose(out.mutual_information, m, rtol=1e-12)
        assert float(out.score) == pytest.approx(mig, rel=1e-12)


# -- active units ------------------------------------------------------------------------


class TestActiveUnits:
    def test_counts_variance_above_threshold(self, xp, asarray):
        rng = np.random.default_rng(0)
        mu = np.stack([rng.normal(0, 1, 500), rng.normal(0, 0.05, 500), np.full(500, 2.0)], 1)
        expected = float(np.sum(np.var(mu, axis=0) > 0.01))
        assert expected == 1.0
        out = vaemath.active_units(asarray(mu))
        assert out.shape == ()
        assert out.dtype == xp.float64
        assert float(out) == expected
        assert float(vaemath.active_units(asarray(mu), threshold=1e-4)) == 2.0

    def test_nan_in_nan_out(self):
        mu = np.ones((10, 2))
        mu[3, 1] = np.nan
        assert math.isnan(float(vaemath.active_units(mu)))

    def test_bad_input(self):
        with pytest.raises(ValueError, match="shape"):
            vaemath.active_units(np.ones(5))
        with pytest.raises(TypeError, match="threshold"):
            vaemath.active_units(np.ones((5, 2)), threshold="0.01")


class TestJaxDefaultPrecisionMetrics:
    def test_float32_without_x64(self):
        pytest.importorskip("jax")
        code = (
            "import warnings; warnings.simplefilter('error');"
            "import jax; jax.config.update('jax_enable_x64', False);"
            "import jax.numpy as jnp, numpy as np, vaemath;"
            "rng = np.random.default_rng(0); v = rng.integers(0, 3, (200, 2));"
            "mu = np.concatenate([v + 0.1 * rng.normal(size=(200, 2)),"
            " rng.normal(size=(200, 1))], 1);"
            "lv = np.full((200, 3), -3.0);"
            "r = vaemath.mutual_information_gap(jnp.asarray(mu, dtype=jnp.float32),"
            " jnp.asarray(lv, dtype=jnp.float32), v);"
            "ref = vaemath.mutual_information_gap(mu, lv, v);"
            "assert r.score.dtype == jnp.float32, r.score.dtype;"
            "assert abs(float(r.score) - float(ref.score)) < 1e-4;"
            "print('ok')"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "ok"
