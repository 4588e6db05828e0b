"""Working precision of the discrete KLs.

* float64 input: the double-word algorithms in float64 (``precise=True``);
* float32 and narrower: the same formulas without the double-word corrections,
  evaluated in float64 and rounded once, wherever the library has float64
  (NumPy, array-api-strict, PyTorch on CPU and CUDA, JAX with
  ``jax_enable_x64``): a short float64 evaluation is both faster and more
  accurate than the double-word one in float32;
* float32 without float64 (JAX without x64, PyTorch on MPS): the double-word
  algorithms in float32 (float16 / bfloat16 via float32).

On JAX the evaluation is compiled with ``jax.jit`` (cached per function, dtype
and static arguments): its eager mode compiles each of the ~200 primitives of
these formulas separately for every new shape, seconds per call instead of a
fraction of a second once (and microseconds after).

This differs from the library-wide :func:`vaemath._lib._helpers.working_dtype`
(which keeps PyTorch float32 in float32) because here the float32 formulas
would need the double-word corrections to stay within a few ulps.
"""

from __future__ import annotations

from collections.abc import Callable

from .._lib._compat import is_jax_namespace, is_torch_namespace
from .._lib._helpers import Array, Namespace

__all__ = ["has_float64", "in_discrete_precision"]


def has_float64(x: Array, *, xp: Namespace) -> bool:
    """Whether ``xp`` computes in float64 for arrays like ``x`` (by type and flags only)."""
    if is_jax_namespace(xp):
        import jax

        return bool(getattr(jax.config, "jax_enable_x64", False))
    if is_torch_namespace(xp):
        return str(x.device.type) != "mps"
    return True


_JITTED: dict[Callable[..., Array], Callable[..., Array]] = {}


def _compiled(fn: Callable[..., Array], xp: Namespace) -> Callable[..., Array]:
    """``fn`` itself, or on JAX ``jax.jit(fn)`` with its keyword arguments static."""
    if not is_jax_namespace(xp):
        return fn
    jitted = _JITTED.get(fn)
    if jitted is None:
        import inspect

        import jax

        static = [
            name
            for name, param in inspect.signature(fn).parameters.items()
            if param.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        jitted = _JITTED[fn] = jax.jit(fn, static_argnames=static)
    return jitted


def in_discrete_precision(
    fn: Callable[..., Array], *arrays: Array, xp: Namespace, **static: object
) -> Array:
    """``fn(*arrays, xp=xp, precise=..., **static)`` in the working precision above.

    All arrays share the dtype of the first; the result is rounded once back
    to it. ``static`` are hashable keyword arguments (an axis).
    """
    fn = _compiled(fn, xp)
    dtype = arrays[0].dtype
    if dtype == xp.float64:
        return fn(*arrays, xp=xp, precise=True, **static)
    if has_float64(arrays[0], xp=xp):
        wide = [xp.astype(a, xp.float64) for a in arrays]
        return xp.astype(fn(*wide, xp=xp, precise=False, **static), dtype)
    if dtype == xp.float32:
        return fn(*arrays, xp=xp, precise=True, **static)
    narrow = [xp.astype(a, xp.float32) for a in arrays]
    return xp.astype(fn(*narrow, xp=xp, precise=True, **static), dtype)
