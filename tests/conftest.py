"""Shared fixtures: one ``xp`` fixture over every installed array backend.

Backends: ``numpy``, ``array_api_strict`` (the conformance oracle: only
standard calls pass), ``torch`` (CPU; ``torch:cuda`` when a GPU exists) and
``jax`` when installed. Torch runs with float64 as its default dtype in the
``torch`` backend so that creation calls that forget ``dtype=`` are caught (the
SciPy trick); float32 is parametrised explicitly where it matters.

On a machine without a C++ compiler ``torch.compile`` cannot build the
estimators' fused kernels: the tests then run the eager path
(``VAEMATH_COMPILE=0``; the fused-kernel tests of ``test_engine_paths.py`` skip)
instead of failing on the library's one-time fallback warning.
"""

from __future__ import annotations

import os
import shutil
import warnings
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from vaemath._lib._compat import array_namespace
from vaemath._lib._testing import Backend, backend_params


def _torch_can_compile() -> bool:
    """Whether ``torch.compile`` builds CPU kernels here (a C++ compiler and headers)."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return False
    try:
        import torch
    except ImportError:
        return True  # nothing to compile
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(torch.compile(lambda x: x.exp().sum())(torch.ones(3)) > 0)
    except Exception:
        return False


if "VAEMATH_COMPILE" not in os.environ and not _torch_can_compile():
    os.environ["VAEMATH_COMPILE"] = "0"


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.param


@pytest.fixture
def xp(backend: Backend) -> ModuleType:
    """The array namespace under test (array-api-compat wrapped)."""
    if backend is Backend.NUMPY:
        import numpy

        return array_namespace(numpy.zeros(0))
    if backend is Backend.ARRAY_API_STRICT:
        import array_api_strict

        return array_api_strict
    if backend in (Backend.TORCH, Backend.TORCH_CUDA):
        import torch

        return array_namespace(torch.zeros(0))
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp


@pytest.fixture
def xp_device(backend: Backend) -> Any:
    """The device arrays are created on in this backend."""
    if backend is Backend.TORCH_CUDA:
        return "cuda"
    return None


@pytest.fixture
def asarray(xp: ModuleType, xp_device: Any):
    """Convert NumPy data to the backend under test, keeping its dtype."""

    def convert(a: Any, dtype: Any = None) -> Any:
        a = np.asarray(a)
        target = getattr(xp, str(dtype or a.dtype))
        return xp.asarray(a, dtype=target, device=xp_device)

    return convert
