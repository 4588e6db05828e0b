"""Array-API plumbing used at every public boundary of vaemath.

The public functions call :func:`resolve` once: it finds the array namespace of
the array arguments (raising a clear ``TypeError`` when two libraries are mixed),
picks the floating dtype of the result, promotes integer arrays to it, and turns
Python scalars into 0-d arrays of that dtype on the inputs' device. Arrays that
are already of the right dtype are passed through untouched: ``xp.asarray`` is
never called on an input array (on torch it would drop ``requires_grad``,
pytorch/pytorch#170819).
"""

from __future__ import annotations

import functools
import operator
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from ._compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_array_api_strict_namespace,
    is_numpy_namespace,
    numpy_namespace,
    torch_namespace,
)

Array = Any
"""Any Array-API-compatible array (NumPy, PyTorch, JAX, array-api-strict, ...)."""

Namespace = ModuleType

__all__ = [
    "Array",
    "Namespace",
    "broadcast_shapes",
    "check_choice",
    "check_encodings",
    "check_index",
    "no_grad",
    "numpy_quiet",
    "resolve",
    "in_working_dtype",
    "to_numpy",
    "working_dtype",
]


def _library_name(x: object) -> str:
    module = type(x).__module__.split(".")[0]
    return {"jaxlib": "jax", "builtins": "python"}.get(module, module)


def _namespace(args: dict[str, object]) -> Namespace:
    """Array namespace of the array-valued entries of ``args``."""
    arrays = {k: v for k, v in args.items() if v is not None and not _is_scalar(v)}
    for name, value in arrays.items():
        if not is_array_api_obj(value):
            msg = (
                f"`{name}` must be an array or a Python float, "
                f"got an object of type {type(value).__name__}"
            )
            raise TypeError(msg)
    if not arrays:
        # Only Python scalars: compute with NumPy in float64.
        return array_namespace(_numpy_zero())
    try:
        return array_namespace(*arrays.values())
    except TypeError as exc:
        libraries: dict[str, list[str]] = {}
        for name, value in arrays.items():
            libraries.setdefault(_library_name(value), []).append(f"`{name}`")
        detail = "; ".join(f"{lib}: {', '.join(n)}" for lib, n in libraries.items())
        msg = (
            "all array arguments must come from one array library, got a mix "
            f"of {' and '.join(sorted(libraries))} ({detail})"
        )
        raise TypeError(msg) from exc


def _numpy_zero() -> Array:
    import numpy as np

    return np.zeros((), dtype=np.float64)


def _is_scalar(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _default_float(xp: Namespace, dev: object) -> Any:
    try:
        info = xp.__array_namespace_info__()
        return info.default_dtypes(device=dev)["real floating"]
    except (AttributeError, TypeError, KeyError):  # pragma: no cover - old libs
        return xp.float64


_NAMESPACE_BY_TYPE: dict[type, Namespace] = {}
_DTYPE_KIND: dict[tuple[int, object], str] = {}


def _known_namespace(cls: type) -> Namespace | None:
    """The compat namespace of torch / NumPy array types, without array_namespace.

    ``array_namespace`` goes through ``functools.lru_cache`` helpers that
    ``torch.compile`` refuses to trace cleanly; the two most common libraries
    are recognised here by their type instead.
    """
    module = cls.__module__
    if module.startswith("torch") and cls.__name__ in ("Tensor", "Parameter"):
        return torch_namespace()
    if cls.__name__ == "ndarray" and module == "numpy":
        return numpy_namespace()
    return None


def _dtype_kind(xp: Namespace, dtype: object) -> str:
    """'float', 'int' or 'other' for a dtype of ``xp`` (cached)."""
    key = (id(xp), dtype)
    kind = _DTYPE_KIND.get(key)
    if kind is None:
        if xp.isdtype(dtype, "real floating"):
            kind = "float"
        elif xp.isdtype(dtype, "integral"):
            kind = "int"
        else:
            kind = "other"
        _DTYPE_KIND[key] = kind
    return kind


def resolve(
    args: dict[str, object],
) -> tuple[Namespace, list[Array]]:
    """Resolve namespace, dtype and device once, and convert the arguments.

    Parameters
    ----------
    args : dict
        Argument name -> value, in call order. Values may be arrays, Python
        ``int``/``float`` scalars, or ``None`` (passed through as ``None``).

    Returns
    -------
    xp : module
        The array namespace (array-api-compat wrapped where needed).
    values : list
        The arguments in the same order: arrays of one real floating dtype,
        Python scalars converted to 0-d arrays of that dtype on the common
        device, ``None`` kept.

    Raises
    ------
    TypeError
        Mixed array libraries, or a boolean / complex / non-numeric argument.
    """
    # Fast path: every non-None argument is an array of one type; the
    # namespace of that type is cached (array_namespace costs microseconds).
    types = set()
    scalars = False
    for value in args.values():
        if value is None:
            continue
        if _is_scalar(value):
            scalars = True
        else:
            types.add(type(value))
    xp = _NAMESPACE_BY_TYPE.get(next(iter(types))) if len(types) == 1 else None
    if xp is None and len(types) == 1:
        xp = _known_namespace(next(iter(types)))
    if xp is None:
        xp = _namespace(args)
        if len(types) == 1:
            _NAMESPACE_BY_TYPE[next(iter(types))] = xp
    dtype = None
    float_dtypes = []
    has_integer = False
    first = None
    for name, value in args.items():
        if value is None or _is_scalar(value):
            continue
        if isinstance(value, bool) or not hasattr(value, "dtype"):
            msg = (
                f"`{name}` must be a real floating array or a Python float, "
                f"got {type(value).__name__}"
            )
            raise TypeError(msg)
        if first is None:
            first = value
        value_dtype = value.dtype
        kind = _dtype_kind(xp, value_dtype)
        if kind == "float":
            float_dtypes.append(value_dtype)
        elif kind == "int":
            has_integer = True
        else:
            msg = f"`{name}` must have a real floating (or integer) dtype, got {value_dtype}"
            raise TypeError(msg)
    for name, value in args.items():
        if isinstance(value, bool) or not (
            value is None or _is_scalar(value) or hasattr(value, "dtype")
        ):
            msg = (
                f"`{name}` must be a real floating array or a Python float, "
                f"got {type(value).__name__}"
            )
            raise TypeError(msg)
    dev = device(first) if first is not None and (scalars or has_integer) else None
    if float_dtypes:
        dtype = float_dtypes[0]
        for other in float_dtypes[1:]:
            if other != dtype:
                dtype = xp.result_type(dtype, other)
    else:
        dtype = _default_float(xp, dev) if has_integer else xp.float64
    out: list[Array] = []
    for value in args.values():
        if value is None:
            out.append(None)
        elif _is_scalar(value):
            out.append(xp.asarray(float(value), dtype=dtype, device=dev))  # type: ignore[arg-type]
        elif value.dtype != dtype:  # type: ignore[attr-defined]
            out.append(xp.astype(value, dtype))
        else:
            out.append(value)
    return xp, out


def working_dtype(xp: Namespace, dtype: Any) -> Any:
    """The dtype to compute in for inputs of ``dtype``.

    * float16 / bfloat16 (torch, JAX): float32, rounded back once at the end
      (their own ``exp``/``expm1`` would leave a few ulps and overflow early);
    * NumPy (and the NumPy-backed array-api-strict) float32: float64,
      because NumPy's SIMD float32 ``exp`` is only accurate to ~1-2 ulps,
      which the KL formulas amplify, while float64 costs NumPy little more;
    * everything else: itself.
    """
    name = str(dtype).rsplit(".", 1)[-1]
    if name in ("float16", "bfloat16"):
        return xp.float32
    if (is_numpy_namespace(xp) or is_array_api_strict_namespace(xp)) and dtype == xp.float32:
        return xp.float64
    return dtype


def in_working_dtype(fn: Callable[..., Array], *arrays: Array | None, xp: Namespace) -> Array:
    """``fn(*arrays, xp=xp)`` computed in :func:`working_dtype`, rounded once back.

    The dtype is that of the first array; ``None`` entries pass through.
    """
    dtype = arrays[0].dtype  # type: ignore[union-attr]
    work = working_dtype(xp, dtype)
    if work == dtype:
        return fn(*arrays, xp=xp)
    widened = (None if a is None else xp.astype(a, work) for a in arrays)
    return xp.astype(fn(*widened, xp=xp), dtype)


_F = TypeVar("_F", bound=Callable[..., Any])


def _numpy_backed_types() -> tuple[type, ...]:
    """NumPy's array types, plus array-api-strict's if it has been imported."""
    import numpy as np

    strict = sys.modules.get("array_api_strict._array_object")
    if strict is None:
        return (np.ndarray, np.generic)
    return (np.ndarray, np.generic, strict.Array)


_HALF = frozenset({"float16", "bfloat16"})


def _half_dtype(x: object) -> Any:
    """The dtype of ``x`` if it is a float16 / bfloat16 array, else ``None``.

    Cheap on the common path: only 2-byte dtypes (``itemsize``, which NumPy,
    torch and JAX dtypes have) are looked at by name.
    """
    dtype = getattr(x, "dtype", None)
    if getattr(dtype, "itemsize", None) != 2 or isinstance(x, (int, float, complex, str)):
        return None
    return dtype if str(dtype).rsplit(".", 1)[-1] in _HALF else None


def _floating_dtype(x: object) -> Any:
    dtype = getattr(x, "dtype", None)
    if dtype is None or isinstance(x, (int, float, complex, str)):
        return None
    name = str(dtype).rsplit(".", 1)[-1]
    return dtype if name.startswith(("float", "bfloat")) else None


def _cast_result(out: Any, dtype: Any, xp: Namespace) -> Any:
    """Arrays (also inside a tuple or a frozen dataclass) cast to ``dtype``; the rest as is."""
    import dataclasses

    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        fields = {
            f.name: _cast_result(getattr(out, f.name), dtype, xp) for f in dataclasses.fields(out)
        }
        return dataclasses.replace(out, **fields)
    if isinstance(out, tuple):
        return (
            type(out)(*(_cast_result(v, dtype, xp) for v in out))
            if hasattr(out, "_fields")
            else tuple(_cast_result(v, dtype, xp) for v in out)
        )
    if _floating_dtype(out) is not None:
        return xp.astype(out, dtype)
    return out


def numpy_quiet(fn: _F) -> _F:
    """The public-boundary wrapper of every vaemath function.

    * Half precision in float32: float16 / bfloat16 array arguments are
      converted to float32 (differentiably), the function runs there, and its
      floating results are rounded once back to the half type when every
      floating argument had that type (mixed with float32, the float32 result
      is returned, as promotion gives). Half types have 3-4 significant
      digits and exp floors near -17 (float16): the log-sum-exp and kernel
      sums of vaemath would lose whole nats in them.
    * NumPy quiet: run under ``np.errstate(all="ignore")`` when given
      NumPy-backed arrays. Overflow to inf and NaN propagation are part of the
      documented behaviour (NaN in gives NaN out); they should not surface as
      RuntimeWarnings. The check is by type only, so traced torch / JAX calls
      are unaffected.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = (*args, *kwargs.values())
        halves = [h for h in map(_half_dtype, values) if h is not None]
        if halves:
            return _in_float32(fn, args, kwargs, values)
        if any(isinstance(a, _numpy_backed_types()) for a in values):
            import numpy as np

            with np.errstate(all="ignore"):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _in_float32(fn: Callable[..., Any], args: tuple, kwargs: dict, values: tuple) -> Any:
    first = next(v for v in values if _half_dtype(v) is not None)
    xp = array_namespace(first)
    floating = {str(d) for d in map(_floating_dtype, values) if d is not None}
    back = first.dtype if len(floating) == 1 else None

    def up(v: Any) -> Any:
        return xp.astype(v, xp.float32) if _half_dtype(v) is not None else v

    wrapped = numpy_quiet(fn)  # the float32 call still gets the NumPy handling
    out = wrapped(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
    return out if back is None else _cast_result(out, back, xp)


def broadcast_shapes(shapes: dict[str, tuple[int | None, ...]]) -> tuple[int | None, ...]:
    """Broadcast shapes by the Array-API rules, naming the culprits on failure."""
    ndim = 0
    for shape in shapes.values():
        ndim = ndim if ndim >= len(shape) else len(shape)
    result: list[int | None] = []
    for axis in range(-ndim, 0):
        size: int | None = 1
        for shape in shapes.values():
            if -axis > len(shape):
                continue
            n = shape[axis]
            if n in (1, size):
                continue
            if size == 1:
                size = n
            elif n is None or size is None:
                size = None
            else:
                described = ", ".join(f"`{k}` {tuple(s)}" for k, s in shapes.items())
                msg = f"shapes do not broadcast together: {described}"
                raise ValueError(msg)
        result.append(size)
    return tuple(result)


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """Check a string option against its allowed values."""
    if not isinstance(value, str) or value not in allowed:
        listed = ", ".join(repr(a) for a in allowed)
        msg = f"`{name}` must be one of {listed}, got {value!r}"
        raise ValueError(msg)
    return value


def to_numpy(x: Any) -> Any:
    """A NumPy copy (or view) of any backend's array, on the host; torch is detached.

    For host-side work on small or integer data (factor labels, histogram bins):
    never for a differentiable path.
    """
    import numpy as np

    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    xp = array_namespace(x)
    if is_array_api_strict_namespace(xp):
        return np.asarray(xp.asarray(x, device=xp.Device("CPU_DEVICE")))
    return np.asarray(x)


def check_index(name: str, value: object, *, low: int, kind: str = "an integer") -> int:
    """An integer option (``operator.index``; not bool) of at least ``low``.

    ``kind`` names what is accepted in the message (``"an integer or None"``
    where the caller handles ``None`` itself).
    """
    if isinstance(value, bool):
        msg = f"`{name}` must be {kind}, got {value!r}"
        raise TypeError(msg)
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        msg = f"`{name}` must be {kind}, got {value!r}"
        raise TypeError(msg) from None
    if number < low:
        msg = f"`{name}` must be at least {low}, got {number}"
        raise ValueError(msg)
    return number


def check_encodings(mu: Array, logvar: Array) -> tuple[int, int]:
    """``(N, D)`` of a dataset's encoder means and log-variances (one non-empty 2-d shape)."""
    for name, value in (("mu", mu), ("logvar", logvar)):
        if value.ndim != 2:
            msg = f"`{name}` must have shape (N, D), got {tuple(value.shape)}"
            raise ValueError(msg)
    if tuple(mu.shape) != tuple(logvar.shape) or 0 in tuple(mu.shape):
        msg = (
            "`mu` and `logvar` must have one non-empty shape (N, D), got "
            f"{tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
        raise ValueError(msg)
    return int(mu.shape[0]), int(mu.shape[1])


def no_grad(xp: Namespace) -> Any:
    """``torch.no_grad()`` for torch, a null context elsewhere (for non-differentiable work)."""
    from contextlib import nullcontext

    if xp.__name__ in ("torch", "array_api_compat.torch"):
        import torch

        return torch.no_grad()
    return nullcontext()
