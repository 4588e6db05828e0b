"""Test helpers shared by vaemath's test suite (private; imported by tests).

``assert_close`` checks namespace, dtype, shape and (when given) device before values, in the
manner of array-api-extra's ``xp_assert_close``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ._compat import array_namespace
from ._compat import device as array_device

__all__ = ["assert_close", "to_numpy"]


def to_numpy(x: Any) -> np.ndarray:
    """Bring any backend's array to NumPy (for reference comparisons)."""
    xp = array_namespace(x)
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if xp.__name__.startswith("array_api_strict"):
        return np.asarray(xp.asarray(x, device=xp.Device("CPU_DEVICE")))
    return np.asarray(x)


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
