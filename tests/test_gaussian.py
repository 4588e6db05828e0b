"""Tests of gaussian_kl, gaussian_log_density and mvn_kl on every backend.

Randomized statistical tests
----------------------------
The Monte-Carlo tests draw from fixed seeds (hypothesis chooses the
parameters, NumPy's Generator seeded from them draws the samples), so a run is
reproducible. Each asserts that the closed form lies within 6 standard errors
of the Monte-Carlo mean of ``log q - log p`` (computed with SciPy, not with
vaemath): a false alarm has probability ~2e-9 per example. A failure that
reproduces is a bug, not bad luck; do not widen the tolerance.

References are independent of the code under test: mpmath at 120 bits,
``scipy.stats``, ``torch.distributions`` and float64 NumPy written out by hand.
"""

from __future__ import annotations

import math
import zlib
from functools import cache

import mpmath
import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaemath import gaussian_kl, gaussian_log_density, mvn_kl
from vaemath._lib._compat import array_namespace
from vaemath._lib._testing import assert_close, to_numpy

SETTINGS = settings(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

mpmath.mp.prec = 120


# -- mpmath references ------------------------------------------------------------


def _expm1mx_mp(d: mpmath.mpf) -> mpmath.mpf:
    """e^d - 1 - d to full working precision (a series where it cancels)."""
    if abs(d) < mpmath.mpf("0.01"):
        return sum(d**k / mpmath.factorial(k) for k in range(2, 40))
    return mpmath.expm1(d) - d


def _kl_mp(mu: float, lv: float, pm: float, plv: float) -> mpmath.mpf:
    mu, lv, pm, plv = (mpmath.mpf(float(v)) for v in (mu, lv, pm, plv))
    d = lv - plv
    return ((mu - pm) ** 2 * mpmath.exp(-plv) + _expm1mx_mp(d)) / 2


def _logpdf_mp(z: float, mu: float, lv: float) -> mpmath.mpf:
    z, mu, lv = (mpmath.mpf(float(v)) for v in (z, mu, lv))
    return -(mpmath.log(2 * mpmath.pi) + lv + (z - mu) ** 2 * mpmath.exp(-lv)) / 2


def ulp_error(actual: np.ndarray, exact: list, dtype: type) -> np.ndarray:
    """|actual - exact| in units of the spacing of ``exact`` rounded to ``dtype``."""
    out = np.empty(len(exact))
    tiny = float(np.finfo(dtype).smallest_subnormal)
    for i, (a, r) in enumerate(zip(np.asarray(actual, dtype=np.float64).ravel(), exact)):
        if not math.isfinite(a):
            out[i] = math.inf
            continue
        spacing = float(np.spacing(dtype(abs(float(r))))) if r != 0 else tiny
        out[i] = float(abs(mpmath.mpf(a) - r)) / max(spacing, tiny)
    return out


REGIONS = ("kl_near_zero", "ordinary", "extreme", "std_near_zero", "std_ordinary", "std_extreme")


@cache
def _kl_grid(region: str, dtype_name: str) -> tuple[tuple[np.ndarray, ...], list]:
    """Inputs (rounded to the dtype) and their exact KL, cached per region."""
    dtype = np.dtype(dtype_name).type
    rng = np.random.default_rng(zlib.crc32(f"{region}-{dtype_name}".encode()))
    n = 400

    def u(a: float, b: float) -> np.ndarray:
        return rng.uniform(a, b, n).astype(dtype)

    zeros = np.zeros(n, dtype)
    if region == "kl_near_zero":
        plv = u(-5, 5)
        # logvar - prior_logvar within +-1e-7 (log-uniform magnitudes down to 1e-12)
        step = np.sign(rng.standard_normal(n)) * 10 ** rng.uniform(-12, -7, n)
        lv = (plv + step).astype(dtype)
        pm = u(-3, 3)
        mu = (pm * (1 + rng.uniform(-1e-6, 1e-6, n))).astype(dtype)
        args = (mu, lv, pm, plv)
    elif region == "ordinary":
        args = (u(-3, 3), u(-4, 4), u(-1, 1), u(-2, 2))
    elif region == "extreme":
        args = (u(-1e3, 1e3), u(-30, 30), u(-1e3, 1e3), u(-30, 30))
    elif region == "std_near_zero":
        step = np.sign(rng.standard_normal(n)) * 10 ** rng.uniform(-12, -7, n)
        args = (u(-1e-5, 1e-5) * (rng.random(n) < 0.5), step.astype(dtype), zeros, zeros)
    elif region == "std_ordinary":
        args = (u(-3, 3), u(-4, 4), zeros, zeros)
    else:
        args = (u(-1e3, 1e3), u(-30, 30), zeros, zeros)
    exact = [_kl_mp(*a) for a in zip(*args)]
    return args, exact


# -- gaussian_kl ------------------------------------------------------------------


class TestGaussianKL:
    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    @pytest.mark.parametrize("region", REGIONS)
    def test_ulp_accuracy_against_mpmath(self, xp, asarray, region, dtype_name):
        (mu, lv, pm, plv), exact = _kl_grid(region, dtype_name)
        if region.startswith("std"):
            out = gaussian_kl(asarray(mu), asarray(lv))
        else:
            out = gaussian_kl(asarray(mu), asarray(lv), asarray(pm), asarray(plv))
        assert out.dtype == getattr(xp, dtype_name)
        err = ulp_error(to_numpy(out), exact, np.dtype(dtype_name).type)
        # XLA's own float32 expm1 is off by up to 4.2 ulps (measured); the
        # 4-ulp contract holds where the library's elementary functions are
        # faithful (NumPy, PyTorch, array-api-strict; JAX in float64).
        limit = 6.0 if (xp.__name__.startswith("jax") and dtype_name == "float32") else 4.0
        assert err.max() <= limit, f"{region}: max {err.max():.2f} ulps at input {err.argmax()}"

    def test_naive_formula_is_inaccurate_where_we_are_not(self):
        # Guards the accuracy test's grid: the textbook formula must fail there.
        (mu, lv, _, _), exact = _kl_grid("std_near_zero", "float64")
        naive = 0.5 * (mu**2 + np.exp(lv) - 1 - lv)
        assert ulp_error(naive, exact, np.float64).max() > 1e6

    @pytest.mark.parametrize(
        ("mu", "lv", "pm", "plv", "expected"),
        [
            pytest.param(0.0, 0.0, 0.0, 0.0, 0.0, id="equal standard"),
            pytest.param(1.0, 0.0, 0.0, 0.0, 0.5, id="unit mean shift"),
            pytest.param(0.5, math.log(0.01), 0.5, math.log(0.01), 0.0, id="equal N(0.5, 0.1^2)"),
            # N(0, 1) vs N(0.5, 0.1^2): 0.5 * (0.25/0.01 + 1/0.01 - 1 - log(100))
            pytest.param(
                0.0,
                0.0,
                0.5,
                math.log(0.01),
                0.5 * (25.0 + 100.0 - 1.0 - math.log(100.0)),
                id="standard vs N(0.5, 0.1^2)",
            ),
        ],
    )
    def test_known_values(self, xp, asarray, mu, lv, pm, plv, expected):
        out = gaussian_kl(asarray(mu), asarray(lv), pm, plv)
        assert_close(out, expected, xp=xp, dtype=xp.float64, shape=(), atol=1e-15)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_matches_torch_distributions(self, xp, asarray, dtype_name):
        torch = pytest.importorskip("torch")
        from torch.distributions import Normal, kl_divergence

        rng = np.random.default_rng(0)
        mu, lv, pm, plv = (rng.uniform(-2, 2, (8, 5)) for _ in range(4))
        ref = kl_divergence(
            Normal(torch.tensor(mu), torch.tensor(lv / 2).exp()),
            Normal(torch.tensor(pm), torch.tensor(plv / 2).exp()),
        ).numpy()
        out = gaussian_kl(*(asarray(a, dtype_name) for a in (mu, lv, pm, plv)))
        rtol = 1e-5 if dtype_name == "float32" else 1e-12
        assert_close(out, ref, xp=xp, dtype=getattr(xp, dtype_name), shape=(8, 5), rtol=rtol)

    @SETTINGS
    @given(
        mu=st.floats(-3, 3),
        lv=st.floats(-3, 2),
        pm=st.floats(-2, 2),
        plv=st.floats(-2, 2),
    )
    def test_monte_carlo(self, xp, asarray, mu, lv, pm, plv):
        seed = zlib.crc32(repr((mu, lv, pm, plv)).encode())
        z = np.random.default_rng(seed).normal(mu, math.exp(lv / 2), 200_000)
        log_ratio = scipy.stats.norm.logpdf(z, mu, math.exp(lv / 2)) - scipy.stats.norm.logpdf(
            z, pm, math.exp(plv / 2)
        )
        se = log_ratio.std(ddof=1) / math.sqrt(z.size)
        kl = float(to_numpy(gaussian_kl(asarray(mu), asarray(lv), pm, asarray(plv))))
        assert abs(kl - log_ratio.mean()) <= 6 * se + 1e-12

    @SETTINGS
    @given(
        mu=st.floats(-50, 50),
        lv=st.floats(-20, 20),
        pm=st.floats(-50, 50),
        plv=st.floats(-20, 20),
    )
    def test_nonnegative_and_zero_only_at_equality(self, xp, asarray, mu, lv, pm, plv):
        kl = float(to_numpy(gaussian_kl(asarray(mu), asarray(lv), asarray(pm), asarray(plv))))
        assert kl >= 0.0
        same = float(to_numpy(gaussian_kl(asarray(pm), asarray(plv), asarray(pm), asarray(plv))))
        assert same == 0.0

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_dtype_and_shape_preserved(self, xp, asarray, dtype_name):
        dtype = getattr(xp, dtype_name)
        mu = asarray(np.zeros((4, 3)), dtype_name)
        lv = asarray(np.ones((1, 3)), dtype_name)
        out = gaussian_kl(mu, lv)
        assert out.dtype == dtype
        assert tuple(out.shape) == (4, 3)
        # standard-prior value at mu = 0, logvar = 1: (e - 2) / 2
        assert_close(out, np.full((4, 3), (math.e - 2) / 2), xp=xp, dtype=dtype)
        prior = gaussian_kl(mu, lv, 0.5, asarray(np.zeros((4, 1)), dtype_name))
        assert prior.dtype == dtype
        assert tuple(prior.shape) == (4, 3)

    def test_integer_input_promoted_to_default_float(self, xp, asarray):
        out = gaussian_kl(asarray(np.array([1, 2])), asarray(np.array([0, 0])))
        assert xp.isdtype(out.dtype, "real floating")
        assert_close(out, [0.5, 2.0], xp=xp)

    def test_python_scalars_only_use_numpy_float64(self):
        out = gaussian_kl(1.0, 0.0)
        assert isinstance(out, (np.ndarray, np.generic))
        assert out.dtype == np.float64
        assert float(out) == 0.5

    def test_broadcast_error_names_shapes(self, xp, asarray):
        with pytest.raises(ValueError, match=r"`mu` \(2, 3\), `logvar` \(4,\)"):
            gaussian_kl(asarray(np.zeros((2, 3))), asarray(np.zeros(4)))

    def test_mixed_libraries_raise_type_error(self, backend):
        torch = pytest.importorskip("torch")
        with pytest.raises(TypeError, match=r"numpy and torch"):
            gaussian_kl(np.zeros(3), torch.zeros(3))

    def test_bool_and_complex_rejected(self):
        with pytest.raises(TypeError, match="`logvar`"):
            gaussian_kl(np.zeros(2), np.zeros(2, dtype=bool))
        with pytest.raises(TypeError, match="`mu`"):
            gaussian_kl(np.zeros(2, dtype=complex), np.zeros(2))
        with pytest.raises(TypeError, match="`prior_mu`"):
            gaussian_kl(np.zeros(2), np.zeros(2), "0")

    def test_nan_in_nan_out_and_infinite_variance(self, xp, asarray):
        nan, inf = math.nan, math.inf
        out = to_numpy(
            gaussian_kl(asarray([nan, 0.0, 0.0, 0.0, inf]), asarray([0.0, nan, inf, -inf, 0.0]))
        )
        assert np.isnan(out[:2]).all()
        assert np.isposinf(out[2:]).all()
        prior = to_numpy(
            gaussian_kl(asarray([0.0, 0.0]), asarray([0.0, 1.0]), asarray([nan, 0.0]), inf)
        )
        assert np.isnan(prior[0])

    def test_sum_matches_mvn_kl_with_diagonal_scale(self, xp, asarray):
        rng = np.random.default_rng(1)
        mu, lv, pm, plv = (rng.uniform(-1, 1, (3, 4)) for _ in range(4))
        diag = gaussian_kl(*(asarray(a) for a in (mu, lv, pm, plv)))
        scale = np.exp(lv / 2)[..., None] * np.eye(4)
        prior_scale = np.exp(plv / 2)[..., None] * np.eye(4)
        full = mvn_kl(asarray(mu), asarray(scale), asarray(pm), asarray(prior_scale))
        assert_close(full, to_numpy(xp.sum(diag, axis=-1)), xp=xp, rtol=1e-13)


class TestGaussianKLGradients:
    @pytest.fixture
    def torch(self):
        return pytest.importorskip("torch")

    @pytest.mark.parametrize("prior", ["standard", "scalar", "array"])
    def test_gradcheck(self, torch, prior):
        gen = torch.Generator().manual_seed(0)
        mu = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
        lv = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
        if prior == "standard":
            args = (mu, lv)
        elif prior == "scalar":
            args = (mu, lv, 0.5, -1.0)
        else:
            pm = torch.randn(4, dtype=torch.float64, generator=gen, requires_grad=True)
            plv = torch.randn(3, 1, dtype=torch.float64, generator=gen, requires_grad=True)
            args = (mu, lv, pm, plv)
        assert torch.autograd.gradcheck(gaussian_kl, args)
        assert torch.autograd.gradgradcheck(gaussian_kl, args)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_analytic_gradients(self, torch, dtype_name):
        dtype = getattr(torch, dtype_name)
        gen = torch.Generator().manual_seed(1)
        mu = torch.randn(50, dtype=dtype, generator=gen, requires_grad=True)
        lv = torch.randn(50, dtype=dtype, generator=gen, requires_grad=True)
        pm = torch.randn(50, dtype=dtype, generator=gen, requires_grad=True)
        plv = torch.randn(50, dtype=dtype, generator=gen, requires_grad=True)
        gaussian_kl(mu, lv, pm, plv).sum().backward()
        m, v, p, w = (t.detach().double() for t in (mu, lv, pm, plv))
        rtol = 1e-5 if dtype_name == "float32" else 1e-12
        torch.testing.assert_close(mu.grad.double(), (m - p) * torch.exp(-w), rtol=rtol, atol=0)
        torch.testing.assert_close(pm.grad.double(), -(m - p) * torch.exp(-w), rtol=rtol, atol=0)
        torch.testing.assert_close(lv.grad.double(), 0.5 * torch.expm1(v - w), rtol=rtol, atol=1e-7)
        torch.testing.assert_close(
            plv.grad.double(),
            -0.5 * (torch.expm1(v - w) + (m - p) ** 2 * torch.exp(-w)),
            rtol=rtol,
            atol=1e-7,
        )
        mu.grad = lv.grad = None
        gaussian_kl(mu, lv).sum().backward()
        torch.testing.assert_close(mu.grad, mu.detach(), rtol=rtol, atol=0)

    def test_requires_grad_survives_and_grads_finite_at_equality(self, torch):
        mu = torch.zeros(5, requires_grad=True)
        lv = torch.tensor([0.0, 1e-8, -1e-8, 30.0, -30.0], requires_grad=True)
        out = gaussian_kl(mu, lv)
        assert out.requires_grad
        out.sum().backward()
        assert torch.isfinite(lv.grad).all()
        assert lv.grad[0] == 0.0

    def test_no_grad_result_has_no_graph(self, torch):
        mu = torch.zeros(3, requires_grad=True)
        with torch.no_grad():
            out = gaussian_kl(mu, torch.zeros(3))
        assert not out.requires_grad


# -- gaussian_log_density ---------------------------------------------------------


class TestGaussianLogDensity:
    def test_matches_scipy(self, xp, asarray):
        rng = np.random.default_rng(2)
        z, mu = rng.normal(size=(2, 6, 3))
        lv = rng.uniform(-4, 4, (6, 3))
        ref = scipy.stats.norm.logpdf(z, mu, np.exp(lv / 2))
        out = gaussian_log_density(asarray(z), asarray(mu), asarray(lv))
        assert_close(out, ref, xp=xp, dtype=xp.float64, shape=(6, 3), rtol=1e-13)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_ulp_accuracy_against_mpmath(self, xp, asarray, dtype_name):
        dtype = np.dtype(dtype_name).type
        rng = np.random.default_rng(3)
        n = 300
        z = rng.uniform(-5, 5, n).astype(dtype)
        mu = rng.uniform(-5, 5, n).astype(dtype)
        lv = rng.uniform(-10, 10, n).astype(dtype)
        exact = [_logpdf_mp(*a) for a in zip(z, mu, lv)]
        out = to_numpy(gaussian_log_density(asarray(z), asarray(mu), asarray(lv)))
        err = ulp_error(out, exact, dtype)
        # The error bound is relative to the largest term of the sum
        # (log 2pi, logvar, quadratic): scale by that term's size over |result|.
        terms = np.maximum.reduce(
            [
                np.full(n, 1.84),
                np.abs(lv.astype(float)),
                ((z - mu) ** 2 * np.exp(-lv)).astype(float),
            ]
        )
        cond = np.maximum(1.0, terms / np.abs(np.array([float(r) for r in exact])))
        assert (err / cond).max() <= 4.0

    def test_log_2pi_cancellation_is_exact(self, xp, asarray):
        # logvar = -log(2 pi) rounded: the result is -(log 2pi + logvar)/2 exactly,
        # a tiny number that a one-constant implementation gets wrong entirely.
        lv = -np.float64(math.log(2 * math.pi))
        out = float(to_numpy(gaussian_log_density(asarray(0.0), 0.0, asarray(lv))))
        exact = _logpdf_mp(0.0, 0.0, lv)
        assert abs(out - float(exact)) <= abs(float(exact)) * 1e-15

    def test_broadcast_and_errors(self, xp, asarray):
        out = gaussian_log_density(asarray(np.zeros((4, 1))), asarray(np.zeros(3)), 0.0)
        assert tuple(out.shape) == (4, 3)
        with pytest.raises(ValueError, match="`z`"):
            gaussian_log_density(asarray(np.zeros(2)), asarray(np.zeros(3)), 0.0)

    def test_gradcheck(self):
        torch = pytest.importorskip("torch")
        args = [torch.randn(4, dtype=torch.float64, requires_grad=True) for _ in range(3)]
        assert torch.autograd.gradcheck(gaussian_log_density, args)


# -- mvn_kl -----------------------------------------------------------------------


def _random_tril(rng: np.random.Generator, shape: tuple[int, ...], dim: int) -> np.ndarray:
    a = np.tril(rng.normal(size=(*shape, dim, dim)) * 0.4)
    idx = np.arange(dim)
    a[..., idx, idx] = rng.uniform(0.5, 2.0, (*shape, dim))
    return a


def _mvn_kl_mp(mu, L, pm, Lp) -> mpmath.mpf:
    mpmath.mp.prec = 120
    S = mpmath.matrix(L.tolist()) * mpmath.matrix(L.tolist()).T
    Sp = mpmath.matrix(Lp.tolist()) * mpmath.matrix(Lp.tolist()).T
    Spi = Sp**-1
    dm = mpmath.matrix((pm - mu).tolist())
    d = len(mu)
    tr = sum((Spi * S)[i, i] for i in range(d))
    return (tr + (dm.T * Spi * dm)[0] - d + mpmath.log(mpmath.det(Sp) / mpmath.det(S))) / 2


class TestMvnKL:
    def test_matches_torch_multivariate_normal(self, xp, asarray):
        torch = pytest.importorskip("torch")
        from torch.distributions import MultivariateNormal, kl_divergence

        rng = np.random.default_rng(4)
        mu, pm = rng.normal(size=(2, 5, 3))
        L, Lp = _random_tril(rng, (5,), 3), _random_tril(rng, (5,), 3)
        ref = kl_divergence(
            MultivariateNormal(torch.tensor(mu), scale_tril=torch.tensor(L)),
            MultivariateNormal(torch.tensor(pm), scale_tril=torch.tensor(Lp)),
        ).numpy()
        out = mvn_kl(asarray(mu), asarray(L), asarray(pm), asarray(Lp))
        assert_close(out, ref, xp=xp, dtype=xp.float64, shape=(5,), rtol=1e-10)

    def test_standard_prior_defaults(self, xp, asarray):
        rng = np.random.default_rng(5)
        mu = rng.normal(size=(2, 4))
        L = _random_tril(rng, (2,), 4)
        S = L @ np.swapaxes(L, -1, -2)
        ref = 0.5 * (
            np.trace(S, axis1=-2, axis2=-1) + (mu**2).sum(-1) - 4 - np.linalg.slogdet(S)[1]
        )
        out = mvn_kl(asarray(mu), asarray(L))
        assert_close(out, ref, xp=xp, dtype=xp.float64, shape=(2,), rtol=1e-12)

    def test_accuracy_near_zero_against_mpmath(self, xp, asarray):
        rng = np.random.default_rng(6)
        Lp = _random_tril(rng, (), 3)
        pm = rng.normal(size=3)
        L = Lp * (1 + 1e-7 * rng.normal(size=(3, 3)))
        mu = pm + 1e-7
        exact = _mvn_kl_mp(mu, L, pm, Lp)
        out = float(to_numpy(mvn_kl(asarray(mu), asarray(L), asarray(pm), asarray(Lp))))
        assert abs(out - float(exact)) <= 4 * np.spacing(float(exact))
        # The textbook formula (trace + Mahalanobis - D + log-det ratio) cancels:
        S, Sp = L @ L.T, Lp @ Lp.T
        Spi = np.linalg.inv(Sp)
        naive = 0.5 * (
            np.trace(Spi @ S)
            + (pm - mu) @ Spi @ (pm - mu)
            - 3
            + np.linalg.slogdet(Sp)[1]
            - np.linalg.slogdet(S)[1]
        )
        assert abs(naive - float(exact)) > 1e-6 * float(exact)

    def test_batch_broadcasting(self, xp, asarray):
        rng = np.random.default_rng(7)
        mu = rng.normal(size=(4, 1, 2))
        L = _random_tril(rng, (3,), 2)
        Lp = _random_tril(rng, (), 2)
        out = mvn_kl(asarray(mu), asarray(L), None, asarray(Lp))
        assert tuple(out.shape) == (4, 3)
        ref = [
            [float(_mvn_kl_mp(mu[i, 0], L[j], np.zeros(2), Lp)) for j in range(3)] for i in range(4)
        ]
        assert_close(out, ref, xp=xp, rtol=1e-12)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_dtype_preserved(self, xp, asarray, dtype_name):
        rng = np.random.default_rng(8)
        out = mvn_kl(
            asarray(rng.normal(size=3), dtype_name), asarray(_random_tril(rng, (), 3), dtype_name)
        )
        assert out.dtype == getattr(xp, dtype_name)

    def test_shape_errors(self, xp, asarray):
        with pytest.raises(ValueError, match=r"`scale_tril` must have shape \(\.\.\., D, D\)"):
            mvn_kl(asarray(np.zeros(3)), asarray(np.eye(2)))
        with pytest.raises(ValueError, match="`prior_mu`"):
            mvn_kl(asarray(np.zeros(3)), asarray(np.eye(3)), asarray(np.zeros(2)))
        with pytest.raises(ValueError, match="do not broadcast"):
            mvn_kl(asarray(np.zeros((2, 3))), asarray(np.tile(np.eye(3), (4, 1, 1))))

    def test_gradcheck(self):
        torch = pytest.importorskip("torch")
        rng = np.random.default_rng(9)
        args = [
            torch.tensor(a, requires_grad=True)
            for a in (
                rng.normal(size=(2, 3)),
                _random_tril(rng, (2,), 3),
                rng.normal(size=3),
                _random_tril(rng, (), 3),
            )
        ]
        assert torch.autograd.gradcheck(mvn_kl, args)

    def test_generic_triangular_solve_matches_native(self):
        from vaemath._gaussian._mvn import forward_substitution as _forward_substitution
        from vaemath._gaussian._mvn import solve_tril as _solve_tril

        rng = np.random.default_rng(10)
        L = _random_tril(rng, (2,), 4)
        b = rng.normal(size=(2, 4, 3))
        xp = array_namespace(L)
        np.testing.assert_allclose(
            _forward_substitution(L, b, xp=xp), _solve_tril(L, b, xp=xp), rtol=1e-12
        )
        np.testing.assert_allclose(L @ _forward_substitution(L, b, xp=xp), b, rtol=1e-12)


class TestFloat32EagerKernel:
    """The float32 kernels (max of two float64 lower bounds, in blocks) on the
    values where such a kernel could go wrong: the crossover of the two bounds,
    tiny and huge log-variances, inf / nan, more than one block, broadcasting."""

    EDGE = np.array(
        [
            0.0,
            1e-30,
            -1e-30,
            1e-9,
            -1e-9,
            3e-4,
            -3e-4,
            3.5e-4,
            -3.5e-4,
            4e-4,
            -4e-4,
            1e-3,
            -1e-3,
            0.75,
            -0.75,
            1.5,
            -1.5,
            20.0,
            -20.0,
            88.5,
            89.3,
            89.5,
            -88.0,
            -1e30,
            1e30,
        ],
        dtype=np.float32,
    )

    def _exact(self, mu, lv):
        return [_kl_mp(m, v, 0.0, 0.0) for m, v in zip(mu, lv)]

    @pytest.fixture(
        params=["few", "blocks", "blocks, torch exp", "torch ops", "torch ops, blocked"]
    )
    def loop(self, request, monkeypatch):
        """Each float32 loop on the same values. ``few``: the fewest-calls loops
        (NumPy's and torch's, up to ``_FEW`` elements). ``blocks``: the NumPy
        blocks for every size (``_FEW = 0``), which torch CPU tensors run on
        views, with NumPy's ``exp`` for NumPy arrays or with torch's. ``torch
        ops``: the torch loops other devices run, here on CPU (``_HOST_BLOCKS =
        False``), for few elements or in blocks."""
        from vaemath._gaussian import _eager

        if "torch" in request.param:
            pytest.importorskip("torch")
        if request.param.startswith("blocks") or request.param.endswith("blocked"):
            monkeypatch.setattr(_eager, "_FEW", 0)
        if request.param.startswith("blocks"):
            torch_exp = request.param.endswith("torch exp")
            monkeypatch.setattr(_eager, "_torch_exp_for_numpy", lambda: torch_exp)
        if request.param.startswith("torch ops"):
            monkeypatch.setattr(_eager, "_HOST_BLOCKS", False)
        return request.param

    @pytest.mark.parametrize("library", ["numpy", "torch"])
    def test_edges_against_mpmath(self, library, loop):
        if library == "numpy" and loop.startswith("torch ops"):
            pytest.skip("the torch loops take tensors only")
        rng = np.random.default_rng(5)
        lv = np.concatenate([self.EDGE, rng.uniform(-4e-4, 4e-4, 3000).astype(np.float32)])
        lv = np.concatenate([lv, np.geomspace(1e-12, 1e-2, 500).astype(np.float32)])
        mu = np.zeros_like(lv)
        mu[::3] = rng.uniform(-1e-5, 1e-5, mu[::3].size)
        if library == "torch":
            torch = pytest.importorskip("torch")
            out = gaussian_kl(torch.from_numpy(mu), torch.from_numpy(lv)).numpy()
        else:
            out = gaussian_kl(mu, lv)
        exact = self._exact(mu, lv)
        finite = np.array([mpmath.isfinite(r) and abs(r) < 3.4e38 for r in exact])
        err = ulp_error(out[finite], [r for r, f in zip(exact, finite) if f], np.float32)
        assert err.max() <= 1.5, f"max {err.max():.2f} ulps at {lv[finite][err.argmax()]}"
        assert np.all(np.isposinf(out[~finite]))

    def test_numpy_blocks_with_torch_exp(self, monkeypatch):
        """Float32 NumPy arrays of more than ``_FEW`` elements on a CPU without a
        vector float64 exp run the blocks with torch's ``exp``: same ulps against
        mpmath, read-only inputs untouched; NumPy's ``exp`` elsewhere, and the
        fewest-calls loop below the size threshold."""
        torch = pytest.importorskip("torch")
        from vaemath._gaussian import _eager

        calls = []
        real = _eager._kl32_blocks

        def spy(mu, logvar, out, half, **kw):
            calls.append((type(mu), mu.shape, kw["torch_exp"]))
            return real(mu, logvar, out, half, **kw)

        monkeypatch.setattr(_eager, "_kl32_blocks", spy)
        rng = np.random.default_rng(8)
        lv = np.concatenate([self.EDGE, rng.uniform(-4e-4, 4e-4, 1000).astype(np.float32)])
        lv = np.concatenate([lv, rng.uniform(-9, 9, 1000).astype(np.float32)])
        mu = rng.standard_normal(lv.size).astype(np.float32)
        mu[::3] = 0.0
        reps = -(-(3 * _eager._BLOCK + 1) // lv.size)  # more than three blocks
        big_mu, big_lv = np.tile(mu, (reps, 1)), np.tile(lv, (reps, 1))
        big_lv.flags.writeable = False
        before = big_lv.copy()

        monkeypatch.setattr(_eager, "_numpy_exp64_vectorised", lambda: False)
        out = gaussian_kl(big_mu, big_lv)
        assert calls == [(np.ndarray, big_mu.shape, True)]
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(big_lv, before)
        exact = self._exact(mu, lv)
        finite = np.array([mpmath.isfinite(r) and abs(r) < 3.4e38 for r in exact])
        for row in (0, reps - 1):
            err = ulp_error(out[row][finite], [r for r, f in zip(exact, finite) if f], np.float32)
            assert err.max() <= 1.5, f"max {err.max():.2f} ulps at {lv[finite][err.argmax()]}"
            assert np.all(np.isposinf(out[row][~finite]))
        gaussian_kl(mu, lv)  # at most _FEW elements: the fewest-calls loop
        assert len(calls) == 1
        reversed_out = gaussian_kl(big_mu[::-1, ::-1], big_lv[::-1, ::-1])  # negative strides
        np.testing.assert_array_equal(reversed_out, out[::-1, ::-1])
        monkeypatch.setattr(_eager, "_numpy_exp64_vectorised", lambda: True)
        np.testing.assert_array_max_ulp(gaussian_kl(big_mu, big_lv), out, maxulp=1)
        assert calls[1:] == [(np.ndarray, big_mu.shape, True), (np.ndarray, big_mu.shape, False)]
        tensor_out = gaussian_kl(torch.from_numpy(big_mu), torch.from_numpy(big_lv.copy()))
        assert calls[-1] == (np.ndarray, big_mu.shape, True)  # torch tensors: torch's exp
        np.testing.assert_array_equal(tensor_out.numpy(), out)

    @pytest.mark.parametrize("library", ["numpy", "numpy via torch", "torch"])
    def test_inf_nan_and_blocks(self, library, monkeypatch):
        from vaemath._gaussian import _eager

        # which loop a large NumPy array takes depends on the CPU: test both everywhere
        if library.startswith("numpy"):
            if library == "numpy via torch":
                pytest.importorskip("torch")
            vector_exp = library == "numpy"
            monkeypatch.setattr(_eager, "_numpy_exp64_vectorised", lambda: vector_exp)
        n = 3 * _eager._BLOCK + 17  # three full blocks and a short one
        rng = np.random.default_rng(6)
        mu = rng.standard_normal(n).astype(np.float32)
        lv = rng.uniform(-6, 6, n).astype(np.float32)
        lv[:4] = [np.inf, -np.inf, np.nan, 0.0]
        mu[4] = np.nan
        mu[5] = np.inf
        with np.errstate(all="ignore"):
            ref = 0.5 * (mu.astype(np.float64) ** 2 + np.expm1(lv.astype(np.float64)) - lv)
        ref[:2] = np.inf
        if library == "torch":
            torch = pytest.importorskip("torch")
            out = gaussian_kl(torch.from_numpy(mu), torch.from_numpy(lv)).numpy()
            bcast = gaussian_kl(torch.from_numpy(mu[:6].reshape(2, 3)), torch.from_numpy(lv[6:9]))
            bcast = bcast.numpy()
        else:
            out = gaussian_kl(mu, lv)
            bcast = gaussian_kl(mu[:6].reshape(2, 3), lv[6:9])
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        np.testing.assert_array_equal(out[:2], [np.inf, np.inf])
        assert out[5] == np.inf
        np.testing.assert_allclose(out[6:], ref[6:], rtol=3e-7, atol=0)
        # the same values through the loop for few elements: within an ulp
        few = _eager._FEW
        if library == "torch":
            small = gaussian_kl(torch.from_numpy(mu[:few]), torch.from_numpy(lv[:few])).numpy()
        else:
            small = gaussian_kl(mu[:few], lv[:few])
        np.testing.assert_array_equal(np.isnan(small), np.isnan(ref[:few]))
        np.testing.assert_array_max_ulp(small[~np.isnan(small)], out[:few][~np.isnan(small)], 1)
        full = 0.5 * (mu[:6].reshape(2, 3).astype(np.float64) ** 2 + np.expm1(lv[6:9]) - lv[6:9])
        np.testing.assert_allclose(bcast, full, rtol=3e-7, equal_nan=True)

    @pytest.mark.parametrize("library", ["numpy", "torch"])
    def test_zero_d_and_empty(self, library, loop):
        """0-d and empty float32 arrays keep their type and shape on both loops (NumPy
        ufuncs of 0-d arrays return scalars, which in-place steps cannot take)."""
        if library == "numpy" and loop.startswith("torch ops"):
            pytest.skip("the torch loops take tensors only")
        conv = np.asarray
        if library == "torch":
            torch = pytest.importorskip("torch")
            conv = torch.from_numpy
        mu, lv = np.array(0.5, np.float32), np.array(-2.0, np.float32)
        out = gaussian_kl(conv(mu), conv(lv))
        assert type(out) is type(conv(mu))
        assert tuple(out.shape) == ()
        exact = _kl_mp(0.5, -2.0, 0.0, 0.0)
        assert ulp_error(np.asarray(out).reshape(1), [exact], np.float32).max() <= 0.5
        empty = np.zeros((0, 3), np.float32)
        assert tuple(gaussian_kl(conv(empty), conv(empty)).shape) == (0, 3)

    def test_torch_gradient_against_mpmath(self, loop):
        torch = pytest.importorskip("torch")
        lv_np = np.concatenate([self.EDGE[:-2], np.geomspace(1e-12, 1.0, 200).astype(np.float32)])
        lv_np = np.concatenate([lv_np, -lv_np])
        mu = torch.zeros(lv_np.size, requires_grad=True)
        lv = torch.from_numpy(lv_np).requires_grad_()
        gaussian_kl(mu, lv).sum().backward()
        exact = [mpmath.expm1(mpmath.mpf(float(v))) / 2 for v in lv_np]
        finite = np.array([abs(r) < 3.4e38 for r in exact])
        grad = lv.grad.numpy()[finite]
        err = ulp_error(grad, [r for r, f in zip(exact, finite) if f], np.float32)
        assert err.max() <= 1.0, f"max {err.max():.2f} ulps at {lv_np[finite][err.argmax()]}"
        # double backward takes the differentiable expm1 form
        lv2 = torch.tensor([0.3, -2.0], requires_grad=True)
        (g,) = torch.autograd.grad(gaussian_kl(torch.zeros(2), lv2).sum(), lv2, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), lv2)
        torch.testing.assert_close(gg, 0.5 * torch.exp(lv2.detach()))
