"""Test helpers shared by vaemath's test suite (private; imported by tests).

``assert_close`` checks namespace, dtype, shape and (when given) device before values, in the
manner of array-api-extra's ``xp_assert_close``.
"""

from __future__ import annotations

import enum
import importlib.util
from types import ModuleType
from typing import Any

import numpy as np

from ._compat import array_namespace
from ._compat import device as array_device
from ._helpers import to_numpy

__all__ = ["Backend", "assert_close", "backend_params", "to_numpy"]


class Backend(enum.Enum):
    """The array backends the test suite runs on (the one list of them)."""

    NUMPY = "numpy"
    ARRAY_API_STRICT = "array_api_strict"
    TORCH = "torch"
    TORCH_CUDA = "torch:cuda"
    JAX = "jax"

    def available(self) -> bool:
        """Whether the backend is installed (and, for ``torch:cuda``, has a GPU)."""
        module = self.value.split(":")[0]
        if importlib.util.find_spec(module) is None:
            return False
        if self is Backend.TORCH_CUDA:
            import torch

            return bool(torch.cuda.is_available())
        return True


def backend_params(*backends: Backend) -> list[Any]:
    """``pytest.param`` per backend (all by default), skipped where unavailable."""
    import pytest

    params = []
    for b in backends or tuple(Backend):
        marks = [] if b.available() else [pytest.mark.skip(reason=f"{b.value} not available")]
        params.append(pytest.param(b, id=b.value, marks=marks))
    return params


def assert_close(
    actual: Any,
    expected: Any,
    *,
    xp: ModuleType,
    dtype: Any = None,
    shape: tuple[int, ...] | None = None,
    rtol: float | None = None,
    atol: float = 0.0,
    err_msg: str = "",
    device: Any = None,
) -> None:
    """Check namespace, dtype, shape (and, given ``device``, device) of ``actual``, then values.

    ``expected`` is NumPy (float64 reference), so it has no device of its own:
    pass ``device`` (e.g. the ``xp_device`` fixture) to check the device of
    ``actual``; ``None`` checks none. Default ``rtol`` is ``4 * sqrt(eps)`` of
    the actual dtype.
    """
    got_xp = array_namespace(actual)
    assert got_xp.__name__ == xp.__name__, f"namespace {got_xp.__name__} != {xp.__name__}"
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    if shape is not None:
        assert tuple(actual.shape) == tuple(shape), f"shape {tuple(actual.shape)} != {shape}"
    if device is not None:
        got = array_device(actual)
        assert str(got) == str(device) or got == device, f"device {got} != {device}"
    a = to_numpy(actual).astype(np.float64)
    if rtol is None:
        rtol = 4 * float(np.sqrt(np.finfo(to_numpy(actual).dtype).eps))
    np.testing.assert_allclose(
        a, np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol, err_msg=err_msg
    )
