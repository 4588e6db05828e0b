"""Shared fixtures: one ``xp`` fixture over every installed array backend.

Backends: ``numpy``, ``array_api_strict`` (the conformance oracle: only
standard calls pass), ``torch`` (CPU; ``torch:cuda`` when a GPU exists) and
``jax`` when installed. Torch runs with float64 as its default dtype in the
``torch`` backend so that creation calls that forget ``dtype=`` are caught (the
SciPy trick); float32 is parametrised explicitly where it matters.
"""

from __future__ import annotations

import enum
import importlib.util
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from vaemath._lib._compat import array_namespace


class Backend(enum.Enum):
    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    TORCH_CUDA = "torch:cuda"
    JAX = "jax"

    def available(self) -> bool:
        module = self.value.split(":")[0]
        if importlib.util.find_spec(module) is None:
            return False
        if self is Backend.TORCH_CUDA:
            import torch

            return bool(torch.cuda.is_available())
        return True


def _params() -> list[Any]:
    params = []
    for b in Backend:
        marks = [] if b.available() else [pytest.mark.skip(reason=f"{b.value} not available")]
        params.append(pytest.param(b, id=b.value, marks=marks))
    return params


@pytest.fixture(params=_params())
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
