"""The one place vaemath imports :mod:`array_api_compat` from.

Everything else in the package goes through these names, so a change of the
compatibility layer (or a vendored copy) touches one file.
"""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType
from typing import Any

from array_api_compat import (
    array_namespace,
    is_array_api_obj,
    is_lazy_array,
    is_numpy_array,
    is_torch_array,
)
from array_api_compat import device as _compat_device


# Namespace predicates by module name. array_api_compat's own ``is_*_namespace``
# go through ``functools.lru_cache``, which ``torch.compile`` warns about and
# traces through; a string comparison compiles to nothing.
def is_torch_namespace(xp: ModuleType) -> bool:
    """Whether ``xp`` is PyTorch (bare or array-api-compat wrapped)."""
    return xp.__name__ in ("torch", "array_api_compat.torch")


def is_numpy_namespace(xp: ModuleType) -> bool:
    """Whether ``xp`` is NumPy (bare or array-api-compat wrapped)."""
    return xp.__name__ in ("numpy", "array_api_compat.numpy")


def is_jax_namespace(xp: ModuleType) -> bool:
    """Whether ``xp`` is JAX's NumPy namespace."""
    return xp.__name__ in ("jax.numpy", "jax.experimental.array_api")


def is_dask_namespace(xp: ModuleType) -> bool:
    """Whether ``xp`` is dask.array (bare or array-api-compat wrapped)."""
    return xp.__name__ in ("dask.array", "array_api_compat.dask.array")


def device(x: Any) -> Any:
    """The device of array ``x`` (torch tensors answered without a traced cache)."""
    if type(x).__module__.startswith("torch"):
        return x.device
    return _compat_device(x)


def torch_namespace() -> ModuleType:
    """array-api-compat's torch namespace (imports torch)."""
    import array_api_compat.torch as xp_torch

    return xp_torch


def numpy_namespace() -> ModuleType:
    """array-api-compat's NumPy namespace."""
    import array_api_compat.numpy as xp_numpy

    return xp_numpy


def torch_transformed(*tensors: Any) -> bool:
    """Whether a ``torch.func`` transform or forward-mode AD sees these tensors.

    Those differentiate the operations themselves: vaemath's in-place kernels
    and custom backward passes must give way to plain out-of-place code.
    """
    import torch

    if torch._C._are_functorch_transforms_active():
        return True
    from torch.autograd import forward_ad

    try:
        return any(forward_ad.unpack_dual(t).tangent is not None for t in tensors if t is not None)
    except RuntimeError:  # no dual level is active
        return False


def is_array_api_strict_namespace(xp: ModuleType) -> bool:
    """Whether ``xp`` is array-api-strict."""
    return xp.__name__ == "array_api_strict"


@functools.cache
def torch_installed() -> bool:
    """Whether torch can be imported here (looked up once, without importing it)."""
    return importlib.util.find_spec("torch") is not None


def torch_view(x: Any) -> Any:
    """A NumPy array as a torch tensor sharing its memory, or as a copy where torch cannot.

    ``torch.from_numpy`` shares memory but rejects negative strides and warns on
    read-only arrays (its tensors are writable); those are copied (C order) first.
    """
    import numpy as np
    import torch

    if not x.flags.writeable or any(s < 0 for s in x.strides):
        x = np.array(x, order="C")
    return torch.from_numpy(x)


__all__ = [
    "array_namespace",
    "device",
    "is_array_api_obj",
    "is_array_api_strict_namespace",
    "is_dask_namespace",
    "is_jax_namespace",
    "is_lazy_array",
    "is_numpy_array",
    "is_numpy_namespace",
    "is_torch_array",
    "is_torch_namespace",
    "numpy_namespace",
    "torch_installed",
    "torch_namespace",
    "torch_transformed",
    "torch_view",
]
