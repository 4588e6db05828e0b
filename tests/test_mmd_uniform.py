"""Tests of ``mmd2_uniform_prior`` and of the error functions behind it (``vaemath._lib._special``).

References: SciPy quadrature (``scipy.integrate.quad`` / ``dblquad``) of the
prior's expectations for D = 1, 2; mpmath at 40+ digits for the per-dimension
factors in the hard regimes (far outside the box, boxes much narrower than the
bandwidth) and for the own erf / erfc / erfcx in ulps; direct kernel sums over a
large uniform sample; and the closed-form population MMD² between a Gaussian and
the box (SciPy's normal CDF), independent of the library's formulas.

Randomized statistical tests
----------------------------
The Monte-Carlo tests draw with fixed seeds and accept a deviation of up to
4 standard errors (estimated from the same draws). With a fixed seed each test
is deterministic; under a different seed a correct implementation would fail
one such check with probability about 6e-5. A failure after a change of seed,
NumPy version or sampling order should be investigated by re-running with a
few other seeds before the code is suspected.
"""

from __future__ import annotations

import importlib.util
import math
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vaemath import mmd2_uniform_prior
from vaemath._lib._special import (
    erf,
    erfcx,
    own_erf,
    own_erfc,
    own_erfcx,
    special_source,
)
from vaemath._lib._testing import assert_close, to_numpy
from vaemath._mmd._uniform import _log_mean_kernel, _log_mean_kernel_pair

integrate = pytest.importorskip("scipy.integrate")
stats = pytest.importorskip("scipy.stats")

ROOT = Path(__file__).resolve().parents[1]


def eager_or_jit(fn: Any, backend: Any) -> Any:
    """``fn`` itself, or under ``jax.jit`` for JAX (eager JAX compiles every small op)."""
    if backend.value != "jax":
        return fn
    import jax

    return jax.jit(fn, static_argnames=("xp",))


def skip_unless_torch(backend: Any) -> None:
    if not backend.value.startswith("torch"):
        pytest.skip("autograd test: torch only")


# -- references ------------------------------------------------------------------------------


def kernel_ref(a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d / (2 * h * h))


def xx_ref(x: np.ndarray, scales: Any) -> float:
    n = len(x)
    k = sum(kernel_ref(x, x, h) for h in np.atleast_1d(scales))
    return float((k.sum() - np.trace(k)) / (n * (n - 1)))


_QUADRATURE: dict[str, float] = {}


def quadrature_mmd2(x: np.ndarray, low: Any, high: Any, h: float) -> float:
    """The estimate with the prior's expectations by SciPy quadrature (D = 1 or 2), cached."""
    key = repr((x.tolist(), np.asarray(low).tolist(), np.asarray(high).tolist(), h))
    if key not in _QUADRATURE:
        _QUADRATURE[key] = _quadrature_mmd2(x, low, high, h)
    return _QUADRATURE[key]


def _quadrature_mmd2(x: np.ndarray, low: Any, high: Any, h: float) -> float:
    dim = x.shape[1]
    low = np.broadcast_to(np.asarray(low, dtype=float), (dim,))
    high = np.broadcast_to(np.asarray(high, dtype=float), (dim,))
    volume = float(np.prod(high - low))
    opts = {"epsabs": 0.0, "epsrel": 1e-13}

    def k(*args: float) -> float:  # args: y (dim values), then x or y' (dim values)
        y, z = np.array(args[:dim]), np.array(args[dim:])
        return math.exp(-float(((y - z) ** 2).sum()) / (2 * h * h))

    if dim == 1:
        cross = [integrate.quad(k, low[0], high[0], args=(xi[0],), **opts)[0] / volume for xi in x]
        prior = (
            integrate.dblquad(lambda y1, y0: k(y0, y1), low[0], high[0], low[0], high[0], **opts)[0]
            / volume**2
        )
    else:
        cross = [
            integrate.dblquad(
                lambda y1, y0, xi=xi: k(y0, y1, xi[0], xi[1]),
                low[0],
                high[0],
                low[1],
                high[1],
                epsabs=0.0,
                epsrel=1e-12,
            )[0]
            / volume
            for xi in x
        ]
        # The 4-D integral factorises into two 2-D ones (y, y' independent per dimension).
        prior = 1.0
        for d in range(2):
            w = high[d] - low[d]
            prior *= (
                integrate.dblquad(
                    lambda a, b: math.exp(-((a - b) ** 2) / (2 * h * h)),
                    low[d],
                    high[d],
                    low[d],
                    high[d],
                    **opts,
                )[0]
                / w**2
            )
    return xx_ref(x, h) - 2 * float(np.mean(cross)) + prior


def population_mmd2_gaussian(scale: float, dim: int, h: float, low: float, high: float) -> float:
    """MMD²(N(0, scale² I_D), U([low, high]^D)) for the RBF kernel, via the normal CDF."""
    w = high - low
    s2 = scale * scale
    kxx = (h * h / (h * h + 2 * s2)) ** (dim / 2)  # E k(x, x'), x - x' ~ N(0, 2 s² I)
    # E_{x ~ N(0, s²)} exp(-(x - y)^2 / (2h^2)) = h / sqrt(h² + s²) exp(-y² / (2 (h² + s²)))
    v = h * h + s2
    cross_1d = (
        h
        / math.sqrt(v)
        * math.sqrt(2 * math.pi * v)
        * (stats.norm.cdf(high / math.sqrt(v)) - stats.norm.cdf(low / math.sqrt(v)))
        / w
    )
    r = w / h
    prior_1d = (
        2
        / r**2
        * (r * math.sqrt(math.pi / 2) * math.erf(r / math.sqrt(2)) + math.expm1(-r * r / 2))
    )
    return kxx - 2 * cross_1d**dim + prior_1d**dim


def mp_log_mean_kernel(x: float, low: float, high: float, h: float) -> float:
    """log E_{y ~ U[low, high]} exp(-(x - y)^2 / (2h^2)) with mpmath at 80 digits."""
    mp = pytest.importorskip("mpmath")
    with mp.workdps(80):
        x, low, high, h = (mp.mpf(v) for v in (x, low, high, h))
        a, b, s2 = (low - x) / h, (high - x) / h, mp.sqrt(2)
        if a >= 0:
            mass = (mp.erfc(a / s2) - mp.erfc(b / s2)) / 2
        elif b <= 0:
            mass = (mp.erfc(-b / s2) - mp.erfc(-a / s2)) / 2
        else:
            mass = 1 - (mp.erfc(b / s2) + mp.erfc(-a / s2)) / 2
        return float(mp.log(h * mp.sqrt(2 * mp.pi) / (high - low) * mass))


def mp_log_mean_kernel_pair(r: float) -> float:
    mp = pytest.importorskip("mpmath")
    with mp.workdps(150):
        r = mp.mpf(r)
        value = 2 / r**2 * (r * mp.sqrt(mp.pi / 2) * mp.erf(r / mp.sqrt(2)) + mp.expm1(-r * r / 2))
        return float(mp.log(value))


# -- the estimator ------------------------------------------------------------------------------


class TestMMD2UniformPrior:
    @pytest.mark.parametrize(
        ("dim", "low", "high", "h"),
        [
            pytest.param(1, -1.0, 1.0, 1.0, id="D=1 default box"),
            pytest.param(1, 0.5, 3.0, 0.3, id="D=1 narrow bandwidth"),
            pytest.param(1, -1.0, 1.0, 20.0, id="D=1 wide bandwidth (narrow box)"),
            pytest.param(2, np.array([-1.0, 0.0]), np.array([1.0, 4.0]), 0.8, id="D=2 per-dim"),
            pytest.param(2, -2.0, np.array([1.0, 0.5]), 1.5, id="D=2 scalar low"),
        ],
    )
    def test_matches_quadrature(self, xp, asarray, dim, low, high, h):
        rng = np.random.default_rng(dim)
        x = rng.normal(size=(7, dim)) * 2.0  # points inside and outside the box
        expected = quadrature_mmd2(x, low, high, h)
        lo = asarray(low) if isinstance(low, np.ndarray) else low
        hi = asarray(high) if isinstance(high, np.ndarray) else high
        got = mmd2_uniform_prior(asarray(x), lo, hi, bandwidth=h)
        assert_close(got, expected, xp=xp, dtype=xp.float64, shape=(), rtol=1e-10, atol=1e-13)

    def test_docstring_value(self):
        # The docstring example, with SciPy quadrature.
        z = np.array([[0.0, 0.0], [2.0, 0.5]])
        expected = quadrature_mmd2(z, -1.0, 1.0, 1.0)
        assert float(mmd2_uniform_prior(z)) == pytest.approx(expected, rel=1e-11)
        assert float(mmd2_uniform_prior(z)) == pytest.approx(-0.183381, abs=1e-6)

    def test_matches_large_uniform_sample(self):
        # The two prior terms against direct kernel sums over 200k uniform draws;
        # tolerance 4 standard errors of those sums.
        rng = np.random.default_rng(7)
        low, high, h, n, m = (
            np.array([-1.0, 0.0, -0.5]),
            np.array([1.0, 2.0, 0.5]),
            0.7,
            20,
            200_000,
        )
        x = rng.normal(size=(n, 3)) * 0.8
        y = rng.uniform(low, high, size=(m, 3))
        cross_per_y = kernel_ref(x, y, h).mean(0)  # (m,), i.i.d. over y
        pairs = np.exp(-((y[: m // 2] - y[m // 2 :]) ** 2).sum(1) / (2 * h * h))  # i.i.d.
        sampled = xx_ref(x, h) - 2 * cross_per_y.mean() + pairs.mean()
        se = math.sqrt(4 * cross_per_y.var(ddof=1) / m + pairs.var(ddof=1) / (m // 2))
        got = float(mmd2_uniform_prior(x, low, high, bandwidth=h))
        assert abs(got - sampled) < 4 * se, (got, sampled, se)
        assert se < 2e-3  # the check has teeth

    def test_unbiased_for_samples_of_the_box(self):
        # x ~ U(box): MMD²(q, U) = 0, so the U-statistic averages to 0.
        rng = np.random.default_rng(8)
        low, high = np.array([-1.0, 0.0]), np.array([1.0, 3.0])
        draws = np.array(
            [
                float(mmd2_uniform_prior(rng.uniform(low, high, size=(8, 2)), low, high))
                for _ in range(400)
            ]
        )
        se = draws.std(ddof=1) / math.sqrt(len(draws))
        assert abs(draws.mean()) < 4 * se, (draws.mean(), se)
        assert (draws < 0).any()  # unbiased, hence sometimes negative

    def test_unbiased_mean_matches_population(self):
        # x ~ N(0, 0.6² I_3) against U([-1, 1]^3): the population MMD² in closed
        # form from the normal CDF (independent of the library's formulas).
        rng = np.random.default_rng(9)
        scale, dim, h = 0.3, 3, 1.2
        draws = np.array(
            [
                float(mmd2_uniform_prior(scale * rng.normal(size=(10, dim)), bandwidth=h))
                for _ in range(400)
            ]
        )
        exact = population_mmd2_gaussian(scale, dim, h, -1.0, 1.0)
        se = draws.std(ddof=1) / math.sqrt(len(draws))
        assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)
        assert exact > 4 * se  # the population value is distinguishable from 0

    def test_multiscale_is_sum(self, xp, asarray):
        rng = np.random.default_rng(10)
        x = asarray(rng.normal(size=(7, 2)))
        scales = [0.3, 1.0, 4.0]
        low, high = asarray(np.array([-1.0, 2.0])), 3.0
        single = [float(to_numpy(mmd2_uniform_prior(x, low, high, bandwidth=h))) for h in scales]
        got = mmd2_uniform_prior(x, low, high, bandwidth=scales)
        assert_close(got, sum(single), xp=xp, rtol=1e-12)

    def test_per_dimension_box_matches_scalars(self, xp, asarray):
        # A (D,) box with equal entries is the scalar box; broadcasting either side.
        rng = np.random.default_rng(11)
        x = asarray(rng.normal(size=(7, 2)))
        expected = float(to_numpy(mmd2_uniform_prior(x, -0.5, 2.0, bandwidth=0.9)))
        for low, high in (
            (asarray(np.full(2, -0.5)), asarray(np.full(2, 2.0))),
            (-0.5, asarray(np.full(2, 2.0))),
            (asarray(np.array([-0.5])), 2.0),
            (asarray(np.asarray(-0.5)), asarray(np.full(2, 2.0))),
        ):
            got = mmd2_uniform_prior(x, low, high, bandwidth=0.9)
            assert_close(got, expected, xp=xp, shape=(), rtol=1e-14)

    def test_translation_invariant(self, xp, asarray):
        # Shifting the sample and the box together changes nothing.
        rng = np.random.default_rng(12)
        x = rng.normal(size=(7, 2))
        expected = float(mmd2_uniform_prior(x, -1.0, 1.0, bandwidth=0.6))
        got = mmd2_uniform_prior(asarray(x + 1e3), 1e3 - 1.0, 1e3 + 1.0, bandwidth=0.6)
        assert_close(got, expected, xp=xp, rtol=1e-9)

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_dtype_and_device(self, xp, asarray, xp_device, dtype):
        rng = np.random.default_rng(13)
        x = rng.normal(size=(7, 2)) * 2.0
        low, high = np.array([-1.0, 0.5]), np.array([1.0, 0.6])
        got = mmd2_uniform_prior(
            asarray(x, dtype), asarray(low, dtype), asarray(high, dtype), bandwidth=[0.5, 2.0]
        )
        x_r = x.astype(dtype).astype(np.float64)
        lo_r, hi_r = low.astype(dtype).astype(np.float64), high.astype(dtype).astype(np.float64)
        expected = float(mmd2_uniform_prior(x_r, lo_r, hi_r, bandwidth=[0.5, 2.0]))
        atol = 2e-6 if dtype == "float32" else 1e-14
        assert_close(
            got,
            expected,
            xp=xp,
            dtype=getattr(xp, dtype),
            shape=(),
            device=xp_device,
            rtol=0,
            atol=atol,
        )

    def test_scalar_box_keeps_float32(self, xp, asarray):
        x = asarray(np.random.default_rng(14).normal(size=(7, 2)), "float32")
        assert mmd2_uniform_prior(x, -1, 2).dtype == xp.float32

    def test_large_dimension_does_not_underflow_termwise(self, xp, asarray):
        # D = 400: every factor < 1, the products ~ 1e-40 (below float32's normal
        # range); sums of logs keep float64 exact where a running product of the
        # float32 factors would lose them.
        rng = np.random.default_rng(15)
        dim = 400
        x = rng.uniform(-1.0, 1.0, size=(4, dim))
        got = to_numpy(mmd2_uniform_prior(asarray(x), bandwidth=2.0))
        r = 1.0
        prior_1d = (
            2 / r**2 * (r * math.sqrt(math.pi / 2) * math.erf(r / math.sqrt(2)) + math.expm1(-0.5))
        )
        assert prior_1d**dim > 0.0
        assert np.isfinite(got)
        assert abs(float(got)) < 1.0

    def test_gradcheck(self, backend, xp, asarray):
        skip_unless_torch(backend)
        import torch

        rng = np.random.default_rng(16)
        # inside, at the edges, just outside, far outside, and a narrow box
        x = np.array([[0.1, -0.3], [1.0, 2.0], [-1.2, 0.5], [4.0, -3.0], [0.9, 2.3]])
        x = asarray(x + 1e-3 * rng.normal(size=x.shape)).requires_grad_(True)
        low = asarray(np.array([-1.0, 0.0])).requires_grad_(True)
        high = asarray(np.array([1.0, 2.0])).requires_grad_(True)
        for bw in (0.7, [0.2, 3.0], 50.0):

            def fn(a, lo, hi, bw=bw):
                return mmd2_uniform_prior(a, lo, hi, bandwidth=bw)

            assert torch.autograd.gradcheck(fn, (x, low, high))

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_gradient_finite_far_outside(self, backend, xp, asarray, dtype):
        if backend.value not in ("torch", "torch:cuda", "jax"):
            pytest.skip("autodiff test: torch and jax")
        x = np.array([[0.0, 0.0], [40.0, -1e3], [-1e4, 3.0], [1e15, 0.5]])
        if backend.value == "jax":
            import jax

            fn = jax.jit(jax.grad(lambda a: mmd2_uniform_prior(a, bandwidth=0.1)))
            grad = fn(asarray(x, dtype))
        else:
            xt = asarray(x, dtype).requires_grad_(True)
            mmd2_uniform_prior(xt, bandwidth=0.1).backward()
            grad = xt.grad
        g = to_numpy(grad)
        assert np.isfinite(g).all(), g

    @pytest.mark.parametrize("half", ["float16", "bfloat16"])
    def test_half_precision(self, half):
        # Computed in float32 (the public-boundary wrapper), rounded once.
        torch = pytest.importorskip("torch")
        dtype = getattr(torch, half)
        x = torch.randn(9, 3, generator=torch.Generator().manual_seed(0)).to(dtype)
        high = torch.tensor([1.0, 2.0, 0.5]).to(dtype)
        got = mmd2_uniform_prior(x, -1.0, high, bandwidth=[0.5, 2.0])
        expected = mmd2_uniform_prior(x.float(), -1.0, high.float(), bandwidth=[0.5, 2.0])
        assert got.dtype == dtype
        assert float(got) == float(expected.to(dtype))

    def test_requires_grad_survives(self, backend, xp, asarray):
        skip_unless_torch(backend)
        x = asarray(np.ones((3, 2))).requires_grad_(True)
        assert mmd2_uniform_prior(x, -1.0, asarray(np.array([2.0, 3.0]))).requires_grad

    @pytest.mark.parametrize(
        ("shape", "kwargs", "match"),
        [
            pytest.param((1, 2), {}, "at least 2 samples", id="one sample"),
            pytest.param((0, 2), {}, "at least 2 samples", id="no sample"),
            pytest.param((5,), {}, r"shape \(n, D\)", id="1-D x"),
            pytest.param((5, 2), {"bandwidth": 0.0}, "positive", id="zero bandwidth"),
            pytest.param((5, 2), {"bandwidth": -1.0}, "positive", id="negative bandwidth"),
            pytest.param((5, 2), {"bandwidth": [1.0, -2.0]}, r"bandwidth\[1\]", id="bad scale"),
            pytest.param((5, 2), {"bandwidth": []}, "non-empty", id="no bandwidth"),
            pytest.param((5, 2), {"bandwidth": "median"}, "median", id="median"),
            pytest.param((5, 2), {"low": 1.0, "high": 1.0}, "low < high", id="empty box"),
            pytest.param((5, 2), {"low": 2.0, "high": 1.0}, "low < high", id="reversed box"),
            pytest.param((5, 2), {"high": math.inf}, "finite", id="infinite box"),
            pytest.param(
                (5, 2), {"low": np.array([-1.0, 3.0])}, "low < high", id="one bad dimension"
            ),
            pytest.param(
                (5, 2), {"high": np.array([1.0, np.inf])}, "finite", id="infinite dimension"
            ),
            pytest.param((5, 2), {"low": np.zeros(3)}, r"`low` \(3,\)", id="low D"),
            pytest.param((5, 2), {"high": np.ones((1, 2))}, r"`high` \(1, 2\)", id="2-D high"),
            pytest.param(
                (5, 2), {"low": np.zeros(2), "high": np.ones(3)}, "broadcast", id="low vs high"
            ),
        ],
    )
    def test_bad_input(self, xp, asarray, shape, kwargs, match):
        kwargs = {k: asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
        with pytest.raises(ValueError, match=match):
            mmd2_uniform_prior(asarray(np.zeros(shape)), **kwargs)

    def test_mixed_libraries(self):
        torch = pytest.importorskip("torch")
        with pytest.raises(TypeError, match="one array library"):
            mmd2_uniform_prior(np.zeros((3, 2)), torch.zeros(2), 1.0)

    @pytest.mark.parametrize("where", ["x", "low array", "low scalar"])
    def test_nan_propagates(self, xp, asarray, where):
        x = np.random.default_rng(17).normal(size=(7, 2))
        low: Any = -1.0
        if where == "x":
            x[2, 1] = np.nan
        elif where == "low array":
            low = asarray(np.array([-1.0, np.nan]))
        else:
            low = math.nan
        out = mmd2_uniform_prior(asarray(x), low, 1.0)
        assert np.isnan(float(to_numpy(out)))

    def test_jit_invalid_box_gives_nan(self, backend, xp):
        # Under tracing the box cannot be read: no error, NaN for an invalid box.
        if backend.value != "jax":
            pytest.skip("jax.jit test: jax only")
        import jax

        jitted = jax.jit(lambda a, lo: mmd2_uniform_prior(a, lo, 1.0))
        x = xp.asarray(np.random.default_rng(18).normal(size=(7, 2)))
        good = xp.asarray(np.array([-1.0, 0.0]))
        assert_close(jitted(x, good), to_numpy(mmd2_uniform_prior(x, good, 1.0)), xp=xp, rtol=1e-12)
        assert bool(xp.isnan(jitted(x, xp.asarray(np.array([-1.0, 2.0])))))

    def test_no_n_by_n_array(self):
        # n = 3000, D = 16, float64: an (n, n, D) temporary is 1.1 GiB and a
        # full (n, n) Gram block 69 MiB; the chunked engine stays far below.
        x = np.random.default_rng(19).normal(size=(3000, 16))
        mmd2_uniform_prior(x[:10])  # first-call allocations
        tracemalloc.start()
        try:
            mmd2_uniform_prior(x, bandwidth=[1.0, 4.0])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak / 2**20 < 40, peak / 2**20


# -- the per-dimension factors in the hard regimes --------------------------------------------


# (x, low, high, h): inside, at the edges, far outside (both tails), boxes far
# narrower than the bandwidth (the narrow series) and at its threshold.
FACTOR_CASES = [
    (x, lo, hi, h)
    for lo, hi in ((-1.0, 1.0), (2.0, 2.5))
    for h in (0.01, 0.3, 1.0, 4.0, 100.0, 1e5)
    for x in (-1e3, -37.0, -14.0, -5.0, -1.2, -1.0, 0.0, 0.3, 2.0, 2.2, 2.5, 2.51, 9.0, 38.6, 300.0)
] + [
    (x, 0.0, 1.0, 2.0) for x in (-2.5, -1.5, -0.5, 1.5, 2.5, 3.5)
]  # delta max(1, |m|) on both sides of the 1/4 threshold


class TestPerDimensionFactors:
    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_log_mean_kernel_vs_mpmath(self, backend, xp, dtype):
        # Reference at the dtype-rounded inputs; error bound: a few eps of
        # max(1, |log E|) (the log of a far-outside factor is -p²/2, whose own
        # condition number is p², i.e. |log E| relative).
        cases = np.array(FACTOR_CASES, dtype=dtype)
        x, low, high, h = (cases[:, j] for j in range(4))
        expected = np.array(
            [mp_log_mean_kernel(float(a), float(b), float(c), float(d)) for a, b, c, d in cases]
        )
        eps = float(np.finfo(dtype).eps)
        # One case per dimension of a single point; the bandwidth enters the
        # formula by arithmetic only, so a (D,) array of them works like a float.
        dt = getattr(xp, dtype)
        lo, hi = xp.asarray(low, dtype=dt), xp.asarray(high, dtype=dt)
        out = eager_or_jit(_log_mean_kernel, backend)(
            xp.asarray(x[None, :], dtype=dt), lo, hi, hi - lo, xp.asarray(h, dtype=dt), xp=xp
        )
        got = to_numpy(out)[0].astype(np.float64)
        err = np.abs(got - expected) / (eps * np.maximum(1.0, np.abs(expected)))
        assert err.max() < 8, cases[np.argmax(err)].tolist()

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_log_mean_kernel_pair_vs_mpmath(self, backend, xp, dtype):
        r = np.array([1e-30, 1e-8, 0.01, 0.0499, 0.05, 0.0501, 0.2, 1, 2, 5, 30, 1e3, 1e8], dtype)
        expected = np.array([mp_log_mean_kernel_pair(float(v)) for v in r])
        got = to_numpy(eager_or_jit(_log_mean_kernel_pair, backend)(xp.asarray(r), xp=xp))
        eps = float(np.finfo(dtype).eps)
        # absolute error of the log = relative error of the factor
        err = np.abs(got - expected) / (eps * np.maximum(1.0, np.abs(expected)))
        assert err.max() < 4, r[np.argmax(err)]


# -- the error functions --------------------------------------------------------------------


def chebyshev_coefficients(f: Any, n: int) -> list[Any]:
    """Interpolation coefficients of ``f`` at ``n`` Chebyshev points of the first kind."""
    mp = pytest.importorskip("mpmath")
    nodes = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / n) for k in range(n)]
    values = [f(t) for t in nodes]
    coeffs = []
    for j in range(n):
        s = mp.fsum(v * mp.cos(mp.pi * j * (k + mp.mpf(1) / 2) / n) for k, v in enumerate(values))
        coeffs.append(s * 2 / n / (2 if j == 0 else 1))
    return coeffs


def special_grid(dtype: Any) -> np.ndarray:
    """Arguments over the whole range: near 0, the bulk, the switch points, deep tails."""
    rng = np.random.default_rng(20)
    parts = [
        rng.uniform(-1.5, 1.5, 600),
        rng.uniform(-6.0, 6.0, 600),
        np.sign(rng.normal(size=600)) * 10.0 ** rng.uniform(-30.0, 0.0, 600),
        rng.uniform(-30.0, 30.0, 600),
        10.0 ** rng.uniform(0.0, 6.0, 600),
        np.array([0.0, 0.5, 1.0, -1.0, 3.0, 26.5, 27.2, 9.2, 10.0, -9.0, 1e15]),
    ]
    return np.concatenate(parts).astype(dtype)


def ulp_errors(got: np.ndarray, exact: list[Any], dtype: Any) -> np.ndarray:
    """|got - exact| in ulps of exact (the dtype's spacing; subnormal spacing below tiny)."""
    mp = pytest.importorskip("mpmath")
    info = np.finfo(dtype)
    out = np.empty(len(got))
    for i, (g, e) in enumerate(zip(got, exact)):
        ef = float(e)
        if abs(ef) > float(info.max):  # exact value overflows the dtype
            out[i] = 0.0 if np.isinf(g) and np.sign(g) == np.sign(ef) else np.inf
            continue
        spacing = (
            float(np.spacing(dtype(abs(ef)))) if abs(ef) >= info.tiny else info.smallest_subnormal
        )
        out[i] = float(abs(mp.mpf(float(g)) - e)) / float(spacing) if np.isfinite(g) else np.inf
    return out


class TestOwnSpecial:
    def test_coefficients(self):
        # The stored coefficients are what the documented derivation gives.
        mp = pytest.importorskip("mpmath")
        import vaemath._lib._special as special

        with mp.workdps(50):
            k = special._ERFCX_K

            def scaled_erfcx(t):
                z = k * (1 + t) / (1 - t)
                return (1 + 2 * z) * mp.erfc(z) * mp.exp(z * z)

            def erf_over_z(u):
                z = mp.sqrt((u + 1) / 2)
                return mp.erf(z) / z

            a = chebyshev_coefficients(scaled_erfcx, 100)
            b = chebyshev_coefficients(erf_over_z, 40)
        assert list(special._ERFCX_COEFFS) == [float(c) for c in a[: len(special._ERFCX_COEFFS)]]
        assert list(special._ERF_COEFFS) == [float(c) for c in b[: len(special._ERF_COEFFS)]]
        # the first dropped terms are below float64 resolution
        assert abs(a[len(special._ERFCX_COEFFS)]) < 1e-17
        assert abs(b[len(special._ERF_COEFFS)]) < 1e-17

    @pytest.mark.parametrize(
        ("carrier", "dtype", "bounds"),
        [
            # float64 arithmetic
            pytest.param("array_api_strict", "float64", (2.0, 4.0, 4.0), id="float64"),
            # float32 on a NumPy-backed library: computed in float64, rounded once
            pytest.param("array_api_strict", "float32", (0.501,) * 3, id="float32 via float64"),
            # float32 arithmetic (any library where float32 stays float32), torch as carrier
            pytest.param("torch", "float32", (2.0, 5.0, 4.0), id="float32 arithmetic"),
        ],
    )
    @pytest.mark.parametrize("name", ["erf", "erfc", "erfcx"])
    def test_ulps_vs_mpmath(self, name, carrier, dtype, bounds):
        # The reference is the exact value at the dtype-rounded argument.
        mp = pytest.importorskip("mpmath")
        bound = bounds[("erf", "erfc", "erfcx").index(name)]
        if carrier == "torch":
            torch = pytest.importorskip("torch")
            from vaemath._lib._compat import array_namespace

            xpc = array_namespace(torch.zeros(0))

            def convert(a):
                return torch.from_numpy(a)
        else:
            import array_api_strict as xpc

            convert = xpc.asarray

        fn = {"erf": own_erf, "erfc": own_erfc, "erfcx": own_erfcx}[name]
        reference = {
            "erf": mp.erf,
            "erfc": mp.erfc,
            "erfcx": lambda v: mp.erfc(v) * mp.exp(v * v),
        }[name]
        z = special_grid(np.dtype(dtype).type)
        if name == "erfcx":
            z = z[z > -26.0] if dtype == "float64" else z[z > -9.0]  # 2 e^{z²} overflows below
        with mp.workdps(40):
            exact = [reference(mp.mpf(float(v))) for v in z]
        with np.errstate(all="ignore"):
            got = to_numpy(fn(convert(z), xp=xpc))
        err = ulp_errors(got, exact, np.dtype(dtype).type)
        assert got.dtype == np.dtype(dtype)
        assert err.max() <= bound, (z[np.argmax(err)], err.max())

    @pytest.mark.parametrize("fn", [own_erf, own_erfc, own_erfcx])
    def test_special_values(self, fn):
        import array_api_strict as xps

        z = xps.asarray([0.0, math.inf, -math.inf, math.nan])
        with np.errstate(all="ignore"):
            got = np.asarray(fn(z, xp=xps))
        expected = {
            own_erf: [0.0, 1.0, -1.0, math.nan],
            own_erfc: [1.0, 0.0, 2.0, math.nan],
            own_erfcx: [1.0, 0.0, math.inf, math.nan],
        }[fn]
        np.testing.assert_array_equal(got, expected)

    def test_sources(self, backend, xp):
        expected = {
            "numpy": "scipy.special",
            "array_api_strict": "vaemath",
            "torch": "torch.special",
            "torch:cuda": "torch.special",
            "jax": "jax.scipy.special",
        }[backend.value]
        assert special_source(xp) == expected
        assert special_source(xp, "erfc") == expected
        # JAX's erfcx is 0 just below its asymptotic switch (see _special)
        assert special_source(xp, "erfcx") == (
            "vaemath" if expected.startswith("jax") else expected
        )
        with pytest.raises(ValueError, match="name"):
            special_source(xp, "gamma")

    @pytest.mark.parametrize("dtype", ["float32", "float64"])
    def test_native_matches_own(self, backend, xp, asarray, dtype):
        z = special_grid(np.float64)
        z = z[np.abs(z) < 20].astype(dtype)
        a = asarray(z)
        tol = {"float32": 1e-6, "float64": 1e-14}[dtype]
        # erfcx only for z > -3: below, the libraries compute 2 exp(z²) with the
        # rounded square (the own one splits it), which differ by z² ulps.
        for native, own, sel in ((erf, own_erf, np.isfinite(z)), (erfcx, own_erfcx, z > -3.0)):
            with np.errstate(all="ignore"):
                got = to_numpy(native(a, xp=xp)).astype(np.float64)
                ref = to_numpy(eager_or_jit(own, backend)(a, xp=xp)).astype(np.float64)
            np.testing.assert_allclose(got[sel], ref[sel], rtol=tol, atol=0)

    def test_own_is_differentiable(self):
        # The own functions are plain array code: autograd goes through them
        # (they serve libraries without a native erf, autodiff or not).
        torch = pytest.importorskip("torch")
        from vaemath._lib._compat import array_namespace

        xpt = array_namespace(torch.zeros(0))
        z = torch.tensor([-3.0, -0.7, 0.2, 0.9, 1.3, 4.0, 12.0], dtype=torch.float64)
        z.requires_grad_(True)
        for fn in (own_erf, own_erfc, own_erfcx):
            assert torch.autograd.gradcheck(lambda a, fn=fn: fn(a, xp=xpt), (z,))
        far = torch.tensor([-60.0, 60.0, 1e30], dtype=torch.float64, requires_grad=True)
        own_erf(far, xp=xpt).sum().backward()
        assert torch.isfinite(far.grad).all()


# -- the docs script --------------------------------------------------------------------------


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mpmath", "matplotlib", "torch")),
    reason="the docs script needs mpmath, matplotlib and torch",
)
def test_docs_script_quick_run(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "_vaemath_docs_mmd_uniform", ROOT / "docs" / "scripts" / "mmd_uniform.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record = module.main(quick=True, out_dir=tmp_path, figure=False)
    for stem in record["tables"]:
        assert (tmp_path / f"{stem}.rst").read_text(encoding="utf-8").startswith(".. list-table::")
