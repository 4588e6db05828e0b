"""Fuzzing the estimators and the MMD functions.

Hypothesis draws batch sizes (including 0 and 1), latent sizes, dtypes and
values over the whole float range (inf, NaN, subnormals, huge magnitudes).
Every call must either raise a documented ``ValueError``/``TypeError`` whose
message names the problem, or return a 0-d array of the input dtype, which is
NaN when an input is NaN and finite whenever all inputs lie in realistic VAE
ranges (latents up to 1e3, logvar in [-20, 10]) — checked separately with
bounded draws. ``VAEMATH_FUZZ_EXAMPLES`` raises the example count.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vaemath
from vaemath._lib._testing import Backend, backend_params

FUZZ = settings(
    deadline=None,
    max_examples=int(os.environ.get("VAEMATH_FUZZ_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

LIBRARIES = backend_params(Backend.NUMPY, Backend.TORCH)  # the eager libraries

ESTIMATORS = {
    "mutual_information": vaemath.mutual_information,
    "total_correlation": vaemath.total_correlation,
    "dimensionwise_kl": vaemath.dimensionwise_kl,
    "elbo_decomposition": lambda z, mu, lv, **kw: vaemath.elbo_decomposition(z, mu, lv, **kw).kl,
    "mmd2": lambda z, mu, lv, **kw: vaemath.mmd2(z, mu),
    "mmd2_biased": lambda z, mu, lv, **kw: vaemath.mmd2(z, mu, unbiased=False),
    "mmd2_gaussian_prior": lambda z, mu, lv, **kw: vaemath.mmd2_gaussian_prior(z),
}


def _convert(library, arrays):
    if library is Backend.NUMPY:
        return arrays
    import torch

    return [torch.from_numpy(np.array(a)) for a in arrays]


def _to_numpy(x):
    return x.detach().numpy() if hasattr(x, "detach") else np.asarray(x)


@st.composite
def latent_batch(draw, elements):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    b = draw(st.integers(0, 6))
    d = draw(st.integers(0, 4))
    arrays = [draw(hnp.arrays(dtype, (b, d), elements=elements(dtype))) for _ in range(3)]
    method = draw(st.sampled_from(["mws", "mss"]))
    dataset_size = draw(st.sampled_from([None, b, b + 7, max(b - 1, 0)]))
    return arrays, method, dataset_size


def _any_float(dtype):
    return st.floats(width=32 if dtype == np.float32 else 64, allow_subnormal=True)


def _realistic(dtype):
    return st.floats(-1e3, 1e3, width=32 if dtype == np.float32 else 64)


def _call(name, library, arrays, method, dataset_size):
    z, mu, lv = _convert(library, arrays)
    kwargs = {} if name.startswith("mmd") else {"method": method, "dataset_size": dataset_size}
    return ESTIMATORS[name](z, mu, lv, **kwargs)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@FUZZ
@given(data=latent_batch(_any_float))
def test_whole_float_range(name, library, data):
    arrays, method, dataset_size = data
    try:
        out = _call(name, library, arrays, method, dataset_size)
    except (ValueError, TypeError) as exc:
        assert str(exc), "exceptions must say what was wrong"  # noqa: PT017
        return
    out = _to_numpy(out)
    assert out.shape == ()
    assert out.dtype == arrays[0].dtype
    used = arrays[:1] if name == "mmd2_gaussian_prior" else arrays
    used = used[:2] if name.startswith("mmd2") else used
    if any(np.isnan(a).any() for a in used):
        assert np.isnan(out)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@FUZZ
@given(data=latent_batch(_realistic))
def test_realistic_ranges_give_finite_values(name, library, data):
    arrays, method, dataset_size = data
    z, mu, lv = arrays
    lv = np.clip(lv, -20, 10).astype(lv.dtype)
    try:
        out = _call(name, library, [z, mu, lv], method, dataset_size)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # noqa: PT017
        return
    value = float(_to_numpy(out))
    assert math.isfinite(value), (name, value)
