"""Tests of bernoulli_kl and categorical_kl on every backend.

Randomized statistical tests
----------------------------
The Monte-Carlo tests draw from fixed seeds (hypothesis chooses the logits,
NumPy's Generator seeded from them draws the samples), so a run is
reproducible. Each asserts that the closed form lies within 6 standard errors
of the Monte-Carlo mean of ``log p(x) - log q(x)``, computed with NumPy
(not with vaemath): a false alarm has probability ~2e-9 per example. A failure
that reproduces is a bug, not bad luck; do not widen the tolerance.

References are independent of the code under test: the definitions evaluated
by mpmath (Bernoulli: 320 bits; categorical: a cancellation-free rewriting at
200 bits, itself checked against the definition at up to 30,000 bits),
``torch.distributions``, ``scipy.special.rel_entr`` / ``scipy.stats.entropy``
and float64 NumPy written out by hand.

XLA (JAX) flushes subnormal numbers to zero; its accuracy is checked on
results above ``smallest_normal * 2**mantissa_bits`` (below that the low
parts of the double-word arithmetic are flushed).
"""

from __future__ import annotations

import math
import zlib
from functools import cache

import mpmath
import numpy as np
import pytest
import scipy.special
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaemath import bernoulli_kl, categorical_kl
from vaemath._lib._testing import assert_close, to_numpy

SETTINGS = settings(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
ULP_LIMIT = 4.0


# -- mpmath references ------------------------------------------------------------


def _bernoulli_mp(a: float, b: float) -> mpmath.mpf:
    """The definition p log(p/q) + (1-p) log((1-p)/(1-q)) from log-sigmoids, at 320 bits."""
    with mpmath.workprec(320):
        a, b = mpmath.mpf(float(a)), mpmath.mpf(float(b))
        if a == b:
            return mpmath.mpf(0)
        log_p, log_pc = -mpmath.log1p(mpmath.exp(-a)), -mpmath.log1p(mpmath.exp(a))
        log_q, log_qc = -mpmath.log1p(mpmath.exp(-b)), -mpmath.log1p(mpmath.exp(b))
        return mpmath.exp(log_p) * (log_p - log_q) + mpmath.exp(log_pc) * (log_pc - log_qc)


def _phi_mp(z: mpmath.mpf) -> mpmath.mpf:
    """e^z - 1 - z to full working precision (a series where it cancels)."""
    if abs(z) < mpmath.mpf("1e-3"):
        return z * z * mpmath.fsum(2 * z**j / mpmath.factorial(j + 2) for j in range(25)) / 2
    return mpmath.expm1(z) - z


def _categorical_mp(a, b) -> mpmath.mpf:
    """sum_k p_k phi(-l_k), l_k = log p_k - log q_k built from logit differences (200 bits).

    The same number as the definition, without its cancellation (checked by
    ``test_reference_matches_definition``); ``-inf`` logits are categories of
    probability 0.
    """
    with mpmath.workprec(200):
        a = [mpmath.mpf(float(x)) for x in a]
        b = [mpmath.mpf(float(x)) for x in b]
        a_max, b_max = max(a), max(b)
        log_sa = mpmath.log(mpmath.fsum(mpmath.exp(x - a_max) for x in a))
        log_sb = mpmath.log(mpmath.fsum(mpmath.exp(y - b_max) for y in b))
        terms = []
        for x, y in zip(a, b):
            if x == -mpmath.inf:
                terms.append(mpmath.mpf(0) if y == -mpmath.inf else mpmath.exp(y - b_max - log_sb))
                continue
            if y == -mpmath.inf:
                return mpmath.inf
            ell = ((x - y) - (a_max - b_max)) - (log_sa - log_sb)
            terms.append(mpmath.exp(x - a_max - log_sa) * _phi_mp(-ell))
        return mpmath.fsum(terms)


def _categorical_definition_mp(a, b, bits: int) -> mpmath.mpf:
    with mpmath.workprec(bits):
        a = [mpmath.mpf(float(x)) for x in a]
        b = [mpmath.mpf(float(x)) for x in b]

        def lse(v):
            m = max(v)
            return m + mpmath.log(mpmath.fsum(mpmath.exp(x - m) for x in v))

        la, lb = lse(a), lse(b)
        return mpmath.fsum(mpmath.exp(x - la) * ((x - la) - (y - lb)) for x, y in zip(a, b))


def ulp_error(actual, exact, dtype, *, floor: float = 0.0) -> np.ndarray:
    """|actual - exact| in units of the spacing of ``exact`` rounded to ``dtype``.

    Points whose exact value is below ``floor`` count as exact (XLA flushes
    subnormals).
    """
    actual = np.asarray(actual, dtype=np.float64).ravel()
    out = np.zeros(len(exact))
    tiny = float(np.finfo(dtype).smallest_subnormal)
    for i, (a, r) in enumerate(zip(actual, exact)):
        if abs(r) < floor:
            continue
        if math.isinf(r) and a == r:
            continue
        if not math.isfinite(a):
            out[i] = math.inf
            continue
        spacing = float(np.spacing(dtype(abs(float(r))))) if r != 0 else tiny
        out[i] = float(abs(mpmath.mpf(a) - r)) / max(spacing, tiny)
    return out


def _floor(xp, dtype) -> float:
    """Smallest exact value whose ulp error is meaningful on this backend."""
    if xp.__name__.startswith("jax"):
        info = np.finfo(dtype)
        return float(info.smallest_normal) * 2.0**info.nmant
    return 0.0


def _near_steps(dtype: type) -> tuple[float, float]:
    """log10 range of relative logit steps near the prior (a few ulps up, per dtype)."""
    return (-12.0, -7.0) if dtype is np.float64 else (-7.0, -3.0)


def _signed(rng: np.random.Generator, lo: float, hi: float, shape) -> np.ndarray:
    """Random sign times a log-uniform magnitude in [10**lo, 10**hi]."""
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(lo, hi, shape)


# -- bernoulli_kl -----------------------------------------------------------------

BERNOULLI_REGIONS = ("near prior", "ordinary", "moderate", "saturated", "tiny probability")


@cache
def _bernoulli_grid(region: str, dtype_name: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Logits (rounded to the dtype) and their exact KL, cached per region."""
    dtype = np.dtype(dtype_name).type
    rng = np.random.default_rng(zlib.crc32(f"bernoulli-{region}-{dtype_name}".encode()))
    n = 300
    if region == "near prior":
        b = rng.uniform(-12, 12, n)
        a = b + _signed(rng, *_near_steps(dtype), n) * np.maximum(1.0, np.abs(b))
    elif region == "ordinary":
        a, b = rng.uniform(-6, 6, n), rng.uniform(-6, 6, n)
    elif region == "moderate":
        a = _signed(rng, -1, 2, n)
        b = a + _signed(rng, 0, 2, n)
    elif region == "saturated":
        a = _signed(rng, 3, 4, n)
        b = np.where(rng.random(n) < 0.5, _signed(rng, 3, 4, n), a + _signed(rng, -8, 1, n))
    else:  # p below the smallest normal number, or close to it
        edge = 745.0 if dtype is np.float64 else 103.0
        a = _signed(rng, math.log10(edge - 45), math.log10(edge + 15), n)
        b = a + _signed(rng, -6, 2.5, n)
    a, b = a.astype(dtype), np.clip(b, -1e4, 1e4).astype(dtype)
    return a, b, [_bernoulli_mp(x, y) for x, y in zip(a, b)]


class TestBernoulliKL:
    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    @pytest.mark.parametrize("region", BERNOULLI_REGIONS)
    def test_ulp_accuracy_against_mpmath(self, xp, asarray, region, dtype_name):
        a, b, exact = _bernoulli_grid(region, dtype_name)
        dtype = np.dtype(dtype_name).type
        out = bernoulli_kl(asarray(a), asarray(b))
        assert out.dtype == getattr(xp, dtype_name)
        err = ulp_error(to_numpy(out), exact, dtype, floor=_floor(xp, dtype))
        i = int(err.argmax())
        assert err.max() <= ULP_LIMIT, f"{region}: {err.max():.2f} ulps at a={a[i]!r}, b={b[i]!r}"

    @settings(deadline=None, max_examples=40)
    @given(
        a=st.floats(-60, 60),
        log_step=st.floats(-12, 2.5),
        negative=st.booleans(),
    )
    def test_ulp_accuracy_hypothesis(self, a, log_step, negative):
        b = a + (-1.0 if negative else 1.0) * 10.0**log_step
        out = bernoulli_kl(np.array([a]), np.array([b]))
        assert ulp_error(out, [_bernoulli_mp(a, b)], np.float64).max() <= ULP_LIMIT

    def test_precise_float32_path(self, monkeypatch):
        # The double-word float32 algorithm, used where the library has no
        # float64 (JAX without x64, PyTorch on MPS), on PyTorch CPU.
        torch = pytest.importorskip("torch")
        monkeypatch.setattr("vaemath._discrete._working.has_float64", lambda x, xp: False)
        for region in BERNOULLI_REGIONS:
            a, b, exact = _bernoulli_grid(region, "float32")
            out = bernoulli_kl(torch.from_numpy(a), torch.from_numpy(b))
            assert out.dtype == torch.float32
            err = ulp_error(out.numpy(), exact, np.float32)
            assert err.max() <= ULP_LIMIT, f"{region}: {err.max():.2f} ulps"

    def test_half_precision_and_meta_device(self):
        torch = pytest.importorskip("torch")
        a, b, _ = _bernoulli_grid("ordinary", "float32")
        for dtype in (torch.float16, torch.bfloat16):
            out = bernoulli_kl(torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype))
            assert out.dtype == dtype
            wide = bernoulli_kl(
                torch.from_numpy(a).to(dtype).double(), torch.from_numpy(b).to(dtype).double()
            )
            assert torch.equal(out, wide.to(dtype))  # rounded once from float64
        # No step moves data to the host or creates an array on another device.
        for dtype in (torch.float32, torch.float64):
            meta = torch.zeros(4, 3, dtype=dtype, device="meta")
            out = bernoulli_kl(meta, 0.5)
            assert out.device.type == "meta"
            assert out.dtype == dtype
            assert categorical_kl(meta, meta, axis=0).device.type == "meta"

    def test_textbook_forms_fail_where_we_do_not(self):
        # Guards the accuracy grid: the naive formulas must lose digits there.
        a, b, exact = _bernoulli_grid("near prior", "float64")
        p, q = scipy.special.expit(a), scipy.special.expit(b)
        naive = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
        assert ulp_error(naive, exact, np.float64).max() > 1e6
        bregman = np.logaddexp(0, b) - np.logaddexp(0, a) - p * (b - a)
        assert ulp_error(bregman, exact, np.float64).max() > 1e6

    @pytest.mark.parametrize(
        ("a", "b", "expected"),
        [
            pytest.param(0.0, 0.0, 0.0, id="equal fair coins"),
            pytest.param(3.5, 3.5, 0.0, id="equal"),
            pytest.param(0.0, math.log(3.0), 0.5 * math.log(4.0 / 3.0), id="1/2 vs 3/4"),
            pytest.param(1e4, -1e4, 1e4, id="saturated opposite"),
        ],
    )
    def test_known_values(self, xp, asarray, a, b, expected):
        # (log 3 is rounded: the exact KL of the rounded input differs by ~4e-16.)
        out = bernoulli_kl(asarray(a), asarray(b))
        assert_close(out, expected, xp=xp, dtype=xp.float64, shape=(), rtol=1e-15, atol=0)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_matches_torch_distributions_and_scipy(self, xp, asarray, dtype_name):
        torch = pytest.importorskip("torch")
        from torch.distributions import Bernoulli, kl_divergence

        a, b, _ = _bernoulli_grid("ordinary", dtype_name)
        a, b = a.reshape(20, 15), b.reshape(20, 15)
        ref = kl_divergence(
            Bernoulli(logits=torch.tensor(a, dtype=torch.float64)),
            Bernoulli(logits=torch.tensor(b, dtype=torch.float64)),
        ).numpy()
        p, q = scipy.special.expit(a.astype(float)), scipy.special.expit(b.astype(float))
        ref_scipy = scipy.special.rel_entr(p, q) + scipy.special.rel_entr(1 - p, 1 - q)
        out = bernoulli_kl(asarray(a), asarray(b))
        rtol = 1e-6 if dtype_name == "float32" else 1e-10
        dtype = getattr(xp, dtype_name)
        assert_close(out, ref, xp=xp, dtype=dtype, shape=(20, 15), rtol=rtol)
        assert_close(out, ref_scipy, xp=xp, dtype=dtype, shape=(20, 15), rtol=rtol)

    @SETTINGS
    @given(a=st.floats(-4, 4), b=st.floats(-4, 4))
    def test_monte_carlo(self, xp, asarray, a, b):
        rng = np.random.default_rng(zlib.crc32(repr((a, b)).encode()))
        x = rng.random(200_000) < scipy.special.expit(a)
        log_p = np.where(x, -np.logaddexp(0, -a), -np.logaddexp(0, a))
        log_q = np.where(x, -np.logaddexp(0, -b), -np.logaddexp(0, b))
        log_ratio = log_p - log_q
        se = log_ratio.std(ddof=1) / math.sqrt(x.size)
        kl = float(to_numpy(bernoulli_kl(asarray(a), b)))
        assert abs(kl - log_ratio.mean()) <= 6 * se + 1e-12

    @SETTINGS
    @given(a=st.floats(-1e4, 1e4), b=st.floats(-1e4, 1e4))
    def test_nonnegative_symmetric_and_zero_only_at_equality(self, xp, asarray, a, b):
        kl = float(to_numpy(bernoulli_kl(asarray(a), asarray(b))))
        assert kl >= 0.0
        assert kl == float(to_numpy(bernoulli_kl(asarray(-a), asarray(-b))))
        assert float(to_numpy(bernoulli_kl(asarray(a), asarray(a)))) == 0.0

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_dtype_shape_device_and_broadcasting(self, xp, asarray, xp_device, dtype_name):
        dtype = getattr(xp, dtype_name)
        a = asarray(np.linspace(-3, 3, 12).reshape(4, 3), dtype_name)
        b = asarray(np.array([0.5, -0.5, 2.0]), dtype_name)
        out = bernoulli_kl(a, b)
        expected = [
            [_bernoulli_mp(x, y) for x, y in zip(row, [0.5, -0.5, 2.0])] for row in to_numpy(a)
        ]
        rtol = 1e-6 if dtype_name == "float32" else 1e-14
        assert_close(
            out,
            np.array(expected, dtype=float),
            xp=xp,
            dtype=dtype,
            shape=(4, 3),
            rtol=rtol,
            device=xp_device,
        )
        scalar_prior = bernoulli_kl(a, 0.25)
        assert scalar_prior.dtype == dtype
        assert tuple(scalar_prior.shape) == (4, 3)
        default = bernoulli_kl(a)
        assert_close(default, to_numpy(bernoulli_kl(a, 0.0)), xp=xp, dtype=dtype, rtol=0, atol=0)

    def test_integer_and_python_scalars(self, xp, asarray):
        out = bernoulli_kl(asarray(np.array([1, 2])), asarray(np.array([0, 2])))
        assert xp.isdtype(out.dtype, "real floating")
        assert_close(out, [float(_bernoulli_mp(1, 0)), 0.0], xp=xp, rtol=1e-6)
        scalars = bernoulli_kl(1.0, 0.5)
        assert isinstance(scalars, (np.ndarray, np.generic))
        assert scalars.dtype == np.float64

    def test_nan_and_infinities(self, xp, asarray):
        nan, inf = math.nan, math.inf
        a = asarray([nan, 0.0, nan, inf, -inf, inf, -inf, 1.0, 1.0])
        b = asarray([0.0, nan, nan, 2.0, 2.0, inf, inf, inf, -inf])
        out = to_numpy(bernoulli_kl(a, b))
        assert np.isnan(out[:3]).all()
        # p = 1 against q = sigmoid(2): -log q; p = 0: -log(1 - q); equal degenerates: 0.
        np.testing.assert_allclose(
            out[3:5], [np.logaddexp(0, -2.0), np.logaddexp(0, 2.0)], rtol=1e-14
        )
        assert out[5] == 0.0
        assert np.isposinf(out[6:]).all()

    def test_broadcast_error_names_shapes(self, xp, asarray):
        with pytest.raises(ValueError, match=r"`logits` \(2, 3\), `prior_logits` \(4,\)"):
            bernoulli_kl(asarray(np.zeros((2, 3))), asarray(np.zeros(4)))

    def test_mixed_libraries_and_bad_types(self, backend):
        torch = pytest.importorskip("torch")
        with pytest.raises(TypeError, match=r"numpy and torch"):
            bernoulli_kl(np.zeros(3), torch.zeros(3))
        with pytest.raises(TypeError, match="`prior_logits`"):
            bernoulli_kl(np.zeros(2), np.zeros(2, dtype=bool))
        with pytest.raises(TypeError, match="`logits`"):
            bernoulli_kl(np.zeros(2, dtype=complex))


class TestBernoulliKLGradients:
    @pytest.fixture
    def torch(self):
        return pytest.importorskip("torch")

    @pytest.mark.parametrize("prior", ["scalar", "array", "near"])
    def test_gradcheck(self, torch, prior):
        gen = torch.Generator().manual_seed(0)
        a = (3 * torch.randn(3, 4, dtype=torch.float64, generator=gen)).requires_grad_()
        if prior == "scalar":
            args = (a, 0.7)
        elif prior == "array":
            args = (a, (3 * torch.randn(4, dtype=torch.float64, generator=gen)).requires_grad_())
        else:
            args = (
                a,
                (
                    a.detach() + 1e-3 * torch.randn(3, 4, dtype=torch.float64, generator=gen)
                ).requires_grad_(),
            )
        assert torch.autograd.gradcheck(bernoulli_kl, args)
        assert torch.autograd.gradgradcheck(bernoulli_kl, args)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_analytic_gradients_finite_at_extremes(self, torch, dtype_name):
        dtype = getattr(torch, dtype_name)
        values = [1e4, -1e4, 0.0, 3.0, 1e4, -1e4, 700.0, -720.0, 50.0, 0.3, -8.0, 40.0]
        priors = [-1e4, 1e4, 0.0, 3.0, 1e4 - 0.5, -1e4, 20.0, -700.0, 50.0 + 1e-6, 0.3, 5.0, -30.0]
        a = torch.tensor(values, dtype=dtype, requires_grad=True)
        b = torch.tensor(priors, dtype=dtype, requires_grad=True)
        out = bernoulli_kl(a, b)
        assert out.requires_grad
        out.sum().backward()
        assert torch.isfinite(a.grad).all()
        assert torch.isfinite(b.grad).all()
        x, y = a.detach().double(), b.detach().double()
        # d/da = -sigmoid'(a) (b - a), d/db = sigmoid(b) - sigmoid(a).
        da = -(torch.sigmoid(x) * torch.sigmoid(-x)) * (y - x)
        db = torch.sigmoid(y) - torch.sigmoid(x)
        tol = 1e-6 if dtype_name == "float32" else 1e-12
        torch.testing.assert_close(a.grad.double(), da, rtol=tol, atol=tol)
        torch.testing.assert_close(b.grad.double(), db, rtol=tol, atol=tol)

    def test_gradient_zero_at_equality(self, torch):
        a = torch.tensor([-5.0, 0.0, 2.5, 1e4], dtype=torch.float64, requires_grad=True)
        bernoulli_kl(a, a.detach().clone()).sum().backward()
        assert (a.grad == 0).all()

    def test_jax_grad(self):
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        a, b = jnp.array([1.0, -2.0, 1e4, 3.0]), jnp.array([0.5, -2.0, -1e4, 3.0 + 1e-7])
        da, db = jax.grad(lambda a, b: bernoulli_kl(a, b).sum(), argnums=(0, 1))(a, b)
        sig = scipy.special.expit
        x, y = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(np.asarray(da), -sig(x) * sig(-x) * (y - x), atol=1e-12)
        np.testing.assert_allclose(np.asarray(db), sig(y) - sig(x), atol=1e-12)


# -- categorical_kl ---------------------------------------------------------------

CATEGORICAL_REGIONS = (
    "near prior",
    "offset logits",
    "ordinary",
    "wide",
    "saturated",
    "uniform prior",
)


@cache
def _categorical_grid(
    region: str, dtype_name: str, k: int = 4, n: int = 80
) -> tuple[np.ndarray, np.ndarray, list]:
    """Logits (rounded to the dtype), ``n`` rows of ``k`` categories, and their exact KL."""
    dtype = np.dtype(dtype_name).type
    rng = np.random.default_rng(zlib.crc32(f"categorical-{region}-{dtype_name}-{k}".encode()))
    if region == "near prior":
        b = rng.normal(0, 3, (n, k))
        a = b + _signed(rng, *_near_steps(dtype), (n, k)) * np.maximum(1.0, np.abs(b))
    elif region == "offset logits":  # a = b + 100 + tiny: constant shift, small KL
        b = rng.normal(0, 1, (n, k))
        a = b + 100.0 + _signed(rng, -9, 0, (n, 1)) * rng.normal(0, 1, (n, k))
    elif region == "ordinary":
        a, b = rng.normal(0, 2, (n, k)), rng.normal(0, 2, (n, k))
    elif region == "wide":
        a, b = rng.normal(0, 30, (n, k)), rng.normal(0, 30, (n, k))
    elif region == "saturated":
        a, b = _signed(rng, 2, 4, (n, k)), _signed(rng, 2, 4, (n, k))
    else:
        a, b = rng.normal(0, 3, (n, k)), np.zeros((n, k))
    a, b = a.astype(dtype), b.astype(dtype)
    return a, b, [_categorical_mp(x, y) for x, y in zip(a, b)]


class TestCategoricalKL:
    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    @pytest.mark.parametrize("region", CATEGORICAL_REGIONS)
    def test_ulp_accuracy_against_mpmath(self, xp, asarray, region, dtype_name):
        a, b, exact = _categorical_grid(region, dtype_name)
        dtype = np.dtype(dtype_name).type
        if region == "uniform prior":
            out = categorical_kl(asarray(a))
        else:
            out = categorical_kl(asarray(a), asarray(b))
        assert out.dtype == getattr(xp, dtype_name)
        assert tuple(out.shape) == (a.shape[0],)
        err = ulp_error(to_numpy(out), exact, dtype, floor=_floor(xp, dtype))
        i = int(err.argmax())
        assert err.max() <= ULP_LIMIT, f"{region}: {err.max():.2f} ulps at a={a[i]}, b={b[i]}"

    @pytest.mark.parametrize("k", [1, 2, 3, 17, 100])
    def test_ulp_accuracy_number_of_categories(self, k):
        for region in ("near prior", "ordinary"):
            a, b, exact = _categorical_grid(region, "float64", k, 80 if k < 17 else 10)
            err = ulp_error(categorical_kl(a, b), exact, np.float64)
            assert err.max() <= ULP_LIMIT, f"K={k}, {region}: {err.max():.2f} ulps"

    def test_precise_float32_path(self, monkeypatch):
        torch = pytest.importorskip("torch")
        monkeypatch.setattr("vaemath._discrete._working.has_float64", lambda x, xp: False)
        for region in CATEGORICAL_REGIONS:
            a, b, exact = _categorical_grid(region, "float32")
            out = categorical_kl(torch.from_numpy(a), torch.from_numpy(b))
            assert out.dtype == torch.float32
            err = ulp_error(out.numpy(), exact, np.float32)
            assert err.max() <= ULP_LIMIT, f"{region}: {err.max():.2f} ulps"

    def test_reference_matches_definition(self):
        # The cancellation-free mpmath reference equals the definition
        # sum p (log p - log q) evaluated with enough bits for its cancellation.
        for region in ("near prior", "saturated"):
            a, b, exact = _categorical_grid(region, "float64")
            for i in range(3):
                bits = 30_000 if region == "saturated" else 400
                definition = _categorical_definition_mp(a[i], b[i], bits)
                assert abs(definition - exact[i]) <= abs(exact[i]) * mpmath.mpf(2) ** -150

    def test_textbook_forms_fail_where_we_do_not(self):
        a, b, exact = _categorical_grid("near prior", "float64")
        log_p = scipy.special.log_softmax(a, axis=-1)
        log_q = scipy.special.log_softmax(b, axis=-1)
        naive = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)
        assert ulp_error(naive, exact, np.float64).max() > 1e6
        torch = pytest.importorskip("torch")
        from torch.distributions import Categorical, kl_divergence

        td = kl_divergence(Categorical(logits=torch.tensor(a)), Categorical(logits=torch.tensor(b)))
        assert ulp_error(td.numpy(), exact, np.float64).max() > 1e6

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_matches_torch_distributions_and_scipy(self, xp, asarray, dtype_name):
        torch = pytest.importorskip("torch")
        from torch.distributions import Categorical, kl_divergence

        a, b, _ = _categorical_grid("ordinary", dtype_name)
        ref = kl_divergence(
            Categorical(logits=torch.tensor(a, dtype=torch.float64)),
            Categorical(logits=torch.tensor(b, dtype=torch.float64)),
        ).numpy()
        p = scipy.special.softmax(a.astype(float), axis=-1)
        q = scipy.special.softmax(b.astype(float), axis=-1)
        ref_scipy = scipy.stats.entropy(p, q, axis=-1)
        out = categorical_kl(asarray(a), asarray(b))
        rtol = 1e-6 if dtype_name == "float32" else 1e-11
        dtype = getattr(xp, dtype_name)
        assert_close(out, ref, xp=xp, dtype=dtype, shape=(a.shape[0],), rtol=rtol)
        assert_close(out, ref_scipy, xp=xp, dtype=dtype, shape=(a.shape[0],), rtol=rtol)

    @SETTINGS
    @given(
        a=st.lists(st.floats(-3, 3), min_size=4, max_size=4),
        shift=st.floats(-3, 3),
    )
    def test_monte_carlo(self, xp, asarray, a, shift):
        a = np.array(a)
        b = np.roll(a, 1) * 0.5 + shift
        p = scipy.special.softmax(a)
        log_ratio = scipy.special.log_softmax(a) - scipy.special.log_softmax(b)
        rng = np.random.default_rng(zlib.crc32(repr((a.tolist(), shift)).encode()))
        samples = log_ratio[rng.choice(a.size, 200_000, p=p)]
        se = samples.std(ddof=1) / math.sqrt(samples.size)
        kl = float(to_numpy(categorical_kl(asarray(a), asarray(b))))
        assert abs(kl - samples.mean()) <= 6 * se + 1e-12

    @SETTINGS
    @given(
        a=st.one_of(
            st.lists(st.floats(-50, 50), min_size=1, max_size=1),
            st.lists(st.floats(-50, 50), min_size=5, max_size=5),
        ),
        seed=st.integers(0, 2**32 - 1),
        shift=st.integers(-(2**10), 2**10),
    )
    def test_shift_invariance_and_nonnegativity(self, xp, asarray, a, seed, shift):
        # Logits on a coarse grid, so that the integer shift is exact.
        a = np.round(np.array(a) * 2**8) / 2**8
        b = np.round(np.random.default_rng(seed).normal(0, 5, a.size) * 2**8) / 2**8
        kl = float(to_numpy(categorical_kl(asarray(a), asarray(b))))
        assert kl >= 0.0
        assert kl == float(to_numpy(categorical_kl(asarray(a + shift), asarray(b))))
        assert kl == float(to_numpy(categorical_kl(asarray(a), asarray(b - shift))))
        assert float(to_numpy(categorical_kl(asarray(a), asarray(a + shift)))) == 0.0

    def test_uniform_prior_is_log_k_minus_entropy(self, xp, asarray):
        rng = np.random.default_rng(3)
        a = rng.normal(0, 2, (6, 5))
        p = scipy.special.softmax(a, axis=-1)
        expected = math.log(5) - scipy.stats.entropy(p, axis=-1)
        for prior in (None, 0.0, 7.5):
            out = categorical_kl(asarray(a), prior)
            assert_close(out, expected, xp=xp, dtype=xp.float64, shape=(6,), rtol=1e-13)

    def test_axis_and_broadcasting(self, xp, asarray):
        rng = np.random.default_rng(4)
        a = rng.normal(0, 1, (3, 4, 5))
        b = rng.normal(0, 1, (4, 1))
        # axis refers to the broadcast shape (3, 4, 5); the other axes broadcast.
        for axis in (0, -2, 2):
            out = categorical_kl(asarray(a), asarray(b), axis=axis)
            a_b, b_b = np.broadcast_arrays(a, b)
            moved_a = np.moveaxis(a_b, axis, -1).reshape(-1, a_b.shape[axis])
            moved_b = np.moveaxis(b_b, axis, -1).reshape(-1, a_b.shape[axis])
            expected = np.array([float(_categorical_mp(x, y)) for x, y in zip(moved_a, moved_b)])
            shape = tuple(np.delete(np.array(a_b.shape), axis))
            assert_close(
                out, expected.reshape(shape), xp=xp, dtype=xp.float64, shape=shape, rtol=1e-14
            )
        # prior broadcast along the category axis: a constant prior is uniform.
        out = categorical_kl(asarray(a), asarray(np.zeros((3, 1, 1))), axis=-1)
        assert_close(out, to_numpy(categorical_kl(asarray(a))), xp=xp, shape=(3, 4), rtol=1e-14)

    def test_one_category_and_masked_categories(self, xp, asarray):
        assert_close(
            categorical_kl(asarray(np.array([[3.0], [-2.0]]))), [0.0, 0.0], xp=xp, shape=(2,)
        )
        inf = math.inf
        a = np.array([[0.0, -inf, 1.0], [0.5, 0.25, -inf], [0.0, -inf, 1.0], [0.0, 1.0, 2.0]])
        b = np.array([[0.0, 2.0, -1.0], [-inf, 0.0, -inf], [0.0, -inf, 1.0], [0.0, -inf, 2.0]])
        out = to_numpy(categorical_kl(asarray(a), asarray(b)))
        np.testing.assert_allclose(out[0], float(_categorical_mp(a[0], b[0])), rtol=1e-14)
        assert np.isposinf(out[1])  # posterior mass where the prior has none
        assert out[2] == 0.0
        assert np.isposinf(out[3])

    def test_nan_rows(self, xp, asarray):
        a = np.array([[0.0, 1.0, 2.0], [0.0, math.nan, 2.0], [0.0, 1.0, 2.0]])
        b = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [math.nan, 1.0, 0.0]])
        out = to_numpy(categorical_kl(asarray(a), asarray(b)))
        assert np.isfinite(out[0])
        assert np.isnan(out[1:]).all()

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_dtype_and_device(self, xp, asarray, xp_device, dtype_name):
        a = asarray(np.array([[1.0, 2.0, 0.5]]), dtype_name)
        out = categorical_kl(a, asarray(np.array([0.0, 1.0, 0.0]), dtype_name))
        expected = float(_categorical_mp([1.0, 2.0, 0.5], [0.0, 1.0, 0.0]))
        rtol = 1e-6 if dtype_name == "float32" else 1e-14
        assert_close(
            out,
            [expected],
            xp=xp,
            dtype=getattr(xp, dtype_name),
            shape=(1,),
            rtol=rtol,
            device=xp_device,
        )

    def test_errors(self, xp, asarray, backend):
        a = asarray(np.zeros((2, 3)))
        with pytest.raises(ValueError, match=r"`axis` 2 is out of range .* 2 dimension"):
            categorical_kl(a, axis=2)
        with pytest.raises(ValueError, match=r"`axis` -3 is out of range"):
            categorical_kl(a, axis=-3)
        with pytest.raises(TypeError, match="`axis` must be an integer"):
            categorical_kl(a, axis=1.0)
        with pytest.raises(TypeError, match="`axis` must be an integer"):
            categorical_kl(a, axis=True)
        with pytest.raises(ValueError, match="at least one category"):
            categorical_kl(asarray(np.zeros((2, 0))))
        with pytest.raises(ValueError, match=r"`logits` \(2, 3\), `prior_logits` \(2,\)"):
            categorical_kl(a, asarray(np.zeros(2)))
        with pytest.raises(ValueError, match="out of range"):
            categorical_kl(asarray(np.array(1.0)))
        torch = pytest.importorskip("torch")
        with pytest.raises(TypeError, match=r"numpy and torch"):
            categorical_kl(np.zeros((2, 3)), torch.zeros(2, 3))


class TestCategoricalKLGradients:
    @pytest.fixture
    def torch(self):
        return pytest.importorskip("torch")

    @pytest.mark.parametrize("prior", ["uniform", "array", "broadcast", "near"])
    def test_gradcheck(self, torch, prior):
        gen = torch.Generator().manual_seed(1)
        a = (2 * torch.randn(3, 4, dtype=torch.float64, generator=gen)).requires_grad_()
        if prior == "uniform":
            args = (a,)
        elif prior == "array":
            args = (a, torch.randn(3, 4, dtype=torch.float64, generator=gen).requires_grad_())
        elif prior == "broadcast":
            args = (a, torch.randn(4, dtype=torch.float64, generator=gen).requires_grad_())
        else:
            args = (
                a,
                (
                    a.detach() + 1e-3 * torch.randn(3, 4, dtype=torch.float64, generator=gen)
                ).requires_grad_(),
            )
        assert torch.autograd.gradcheck(categorical_kl, args)
        assert torch.autograd.gradgradcheck(categorical_kl, args)

    @pytest.mark.parametrize("dtype_name", ["float32", "float64"])
    def test_analytic_gradients_finite_at_extremes(self, torch, dtype_name):
        dtype = getattr(torch, dtype_name)
        a = torch.tensor(
            [[1e4, -1e4, 0.0], [3.0, 3.0, 3.0], [1.0, 2.0, -1e4], [0.2, -0.4, 0.1]],
            dtype=dtype,
            requires_grad=True,
        )
        b = torch.tensor(
            [[-1e4, 1e4, 0.0], [3.0, 3.0, 3.0], [1.0, 2.0 + 1e-5, -1e4], [0.2, -0.4, 0.1 + 1e-3]],
            dtype=dtype,
            requires_grad=True,
        )
        out = categorical_kl(a, b)
        assert out.requires_grad
        out.sum().backward()
        assert torch.isfinite(a.grad).all()
        assert torch.isfinite(b.grad).all()
        x, y = a.detach().double(), b.detach().double()
        log_p, log_q = torch.log_softmax(x, -1), torch.log_softmax(y, -1)
        p, q = log_p.exp(), log_q.exp()
        kl = (p * (log_p - log_q)).sum(-1, keepdim=True)
        # d/da_k = p_k (l_k - KL), d/db_k = q_k - p_k.
        tol = 1e-5 if dtype_name == "float32" else 1e-10
        torch.testing.assert_close(a.grad.double(), p * ((log_p - log_q) - kl), rtol=tol, atol=tol)
        torch.testing.assert_close(b.grad.double(), q - p, rtol=tol, atol=tol)

    def test_jax_grad(self):
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        a, b = jnp.array([[1.0, -2.0, 0.5]]), jnp.array([[0.5, -2.0, 3.0]])
        da, db = jax.grad(lambda a, b: categorical_kl(a, b).sum(), argnums=(0, 1))(a, b)
        log_p = scipy.special.log_softmax(np.asarray(a), -1)
        log_q = scipy.special.log_softmax(np.asarray(b), -1)
        p, q = np.exp(log_p), np.exp(log_q)
        kl = np.sum(p * (log_p - log_q), -1, keepdims=True)
        np.testing.assert_allclose(np.asarray(da), p * ((log_p - log_q) - kl), atol=1e-12)
        np.testing.assert_allclose(np.asarray(db), q - p, atol=1e-12)
