"""Fuzzing the Gaussian functions over the whole float range.

Hypothesis draws shapes that broadcast, float32/float64 dtypes and values from
the entire range: +-inf, NaN, subnormals, huge and tiny magnitudes, empty arrays.
Every outcome must be either a documented exception or a result of the
broadcast shape and input dtype that

* is NaN where an input is NaN,
* is finite and within 4 ulps of the mpmath value wherever that value is
  finite and representable (so accuracy is fuzzed too, not only crashes),
* is +inf where the exact value overflows the dtype.

Run with ``--hypothesis-show-statistics`` to see how many examples ran.
"""

from __future__ import annotations

import math
import os

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vaemath import gaussian_kl, gaussian_log_density
from vaemath._lib._testing import Backend, backend_params

# VAEMATH_FUZZ_EXAMPLES raises the count for a longer campaign.
FUZZ = settings(
    deadline=None,
    max_examples=int(os.environ.get("VAEMATH_FUZZ_EXAMPLES", "100")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

mpmath.mp.prec = 160


def _expm1mx_mp(d):
    """e^d - 1 - d to full working precision (a series where it cancels)."""
    if abs(d) < mpmath.mpf("0.01"):
        return sum(d**k / mpmath.factorial(k) for k in range(2, 40))
    return mpmath.expm1(d) - d


def _exact_kl(mu, lv, pm, plv):
    mu, lv, pm, plv = (mpmath.mpf(float(v)) for v in (mu, lv, pm, plv))
    d = lv - plv
    return ((mu - pm) ** 2 * mpmath.exp(-plv) + _expm1mx_mp(d)) / 2


def _exact_logpdf(z, mu, lv):
    z, mu, lv = (mpmath.mpf(float(v)) for v in (z, mu, lv))
    return -(mpmath.log(2 * mpmath.pi) + lv + (z - mu) ** 2 * mpmath.exp(-lv)) / 2


@st.composite
def broadcast_arrays(draw, n: int):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=n, max_dims=3, max_side=3))
    elements = st.floats(
        allow_nan=True,
        allow_infinity=True,
        allow_subnormal=True,
        width=32 if dtype == np.float32 else 64,
    )
    return [
        draw(hnp.arrays(dtype, shape, elements=elements)) for shape in shapes.input_shapes
    ], shapes.result_shape


def _check(out, args, shape, exact_fn, finite_limit=None):
    out = np.asarray(out)
    dtype = args[0].dtype.type
    assert out.dtype == dtype
    assert out.shape == shape
    big = float(np.finfo(dtype).max)
    bargs = np.broadcast_arrays(*args)
    for idx in np.ndindex(shape):
        vals = [float(a[idx]) for a in bargs]
        got = float(out[idx])
        if any(math.isnan(v) for v in vals):
            assert math.isnan(got), (vals, got)
            continue
        if not all(math.isfinite(v) for v in vals):
            continue  # documented per function; checked in the unit tests
        exact = exact_fn(*vals)
        if abs(exact) > big * (1 - 1e-6):
            assert math.isinf(got) or abs(got) >= big * 0.99, (vals, got)
            continue
        assert math.isfinite(got), (vals, got, exact)
        if finite_limit is not None and not finite_limit(vals, exact):
            continue
        tiny = float(np.finfo(dtype).smallest_subnormal)
        spacing = max(float(np.spacing(dtype(abs(float(exact))))), tiny)
        ulps = float(abs(mpmath.mpf(got) - exact)) / spacing
        assert ulps <= 4.0, (vals, got, float(exact), ulps)


LIBRARIES = backend_params(Backend.NUMPY, Backend.TORCH)  # the eager libraries


def _call(library, fn, args):
    if library is Backend.NUMPY:
        return fn(*args)
    import torch

    return fn(*(torch.from_numpy(np.array(a)) for a in args)).numpy()


@pytest.mark.parametrize("library", LIBRARIES)
@FUZZ
@given(data=broadcast_arrays(4))
def test_fuzz_gaussian_kl(library, data):
    args, shape = data
    out = _call(library, gaussian_kl, args)
    _check(out, args, shape, _exact_kl)


@pytest.mark.parametrize("library", LIBRARIES)
@FUZZ
@given(data=broadcast_arrays(2))
def test_fuzz_gaussian_kl_standard_prior(library, data):
    args, shape = data
    out = _call(library, gaussian_kl, args)
    dtype = args[0].dtype
    zeros = np.zeros((), dtype)
    _check(out, [*args, zeros, zeros], shape, _exact_kl)


def _well_conditioned(vals, exact):
    # log N(z; mu, e^v) is a sum of terms of both signs; its error bound is
    # relative to the largest term, so only check ulps where no term exceeds
    # the result by more than 4x (elsewhere the digits are not in the inputs'
    # rounding, see the docstring).
    z, mu, lv = vals
    quad = float((mpmath.mpf(z) - mpmath.mpf(mu)) ** 2 * mpmath.exp(-mpmath.mpf(lv)))
    largest = max(1.84, abs(lv), quad)
    return largest <= 4 * abs(float(exact))


@pytest.mark.parametrize("library", LIBRARIES)
@FUZZ
@given(data=broadcast_arrays(3))
def test_fuzz_gaussian_log_density(library, data):
    args, shape = data
    out = _call(library, gaussian_log_density, args)
    _check(out, args, shape, _exact_logpdf, finite_limit=_well_conditioned)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_arrays(dtype):
    out = gaussian_kl(np.zeros((0, 3), dtype), np.zeros((0, 3), dtype), 0.5, 0.1)
    assert out.shape == (0, 3)
    assert out.dtype == dtype
    assert gaussian_kl(np.zeros((0,), dtype), np.zeros((0,), dtype)).shape == (0,)
