r"""Elementwise steps of the tile engines: floored ``exp``, flushed softmax weights, log-sum-exp.

Shared by the generic tiles (:mod:`._tiles`, :mod:`._groups`) and the fused
kernels (:mod:`._compiled`), which use the same floor and cut constants.
"""

from __future__ import annotations

import math
import os
from typing import Any

from .._lib._compat import device, is_numpy_namespace, is_torch_namespace
from .._lib._helpers import Array, Namespace

__all__ = [
    "MIN_FUSED_TERMS",
    "contiguous",
    "exp_floor",
    "exp_inplace",
    "fused_requested",
    "lse_last",
    "softmax_cut",
    "softmax_inplace",
]

MIN_FUSED_TERMS = 1 << 25
"""Fewest ``M N D`` terms for the fused kernels of :mod:`._compiled`."""


def fused_requested(terms: int) -> bool:
    """Whether ``VAEMATH_COMPILE`` and the problem size ask for the fused kernels.

    ``0``: never; ``1``: at every size; unset: from :data:`MIN_FUSED_TERMS` terms.
    (Whether they can run -- torch present, compiling works -- is checked by the caller.)
    """
    setting = os.environ.get("VAEMATH_COMPILE", "").strip()
    if setting == "0":
        return False
    return setting == "1" or terms >= MIN_FUSED_TERMS


def exp_floor(dtype: Any, *, xp: Namespace) -> float:
    """The floor of :func:`exp_inplace`: ``log`` of the smallest normal number plus 7."""
    return math.log(float(xp.finfo(dtype).smallest_normal)) + 7.0


def softmax_cut(dtype: Any, *, xp: Namespace) -> float:
    """The cut of :func:`softmax_inplace`: ``log sqrt(smallest normal)``."""
    return 0.5 * math.log(float(xp.finfo(dtype).smallest_normal))


def exp_inplace(x: Array, *, xp: Namespace, functional: bool = False) -> Array:
    """``exp(max(x, floor))`` for ``x <= 0``, overwriting the temporary ``x`` where possible.

    Arguments below ``floor`` (``log`` of the smallest normal number plus 7:
    about -80 in float32, -701 in float64) are raised to it before ``exp``.
    Their results would be subnormal or zero, which puts vectorised ``exp``
    on a slow path (measured 5-12x slower on torch CPU); raised, each adds at
    most ``e^floor`` (1e-35 in float32) to a sum that contains a 1, which is
    below rounding. The callers handle non-finite maxima separately.
    """
    floor = exp_floor(x.dtype, xp=xp)
    if functional:
        return xp.exp(xp.maximum(x, xp.asarray(floor, dtype=x.dtype, device=device(x))))
    if is_torch_namespace(xp):
        return x.clamp_(min=floor).exp_()
    if is_numpy_namespace(xp):
        import numpy as np

        np.maximum(x, floor, out=x)
        return np.exp(x, out=x)
    return xp.exp(xp.maximum(x, xp.asarray(floor, dtype=x.dtype, device=device(x))))


def softmax_inplace(x: Array, *, xp: Namespace) -> Array:
    """``exp(x)`` for ``x <= 0`` with results below ``sqrt(smallest normal)`` set to 0.

    Used for the softmax weights of the backward pass, which are multiplied by
    upstream gradients and differences: a weight below ``1e-19`` (float32;
    ``1e-154`` in float64) changes no gradient at working precision, and
    flushing it to an exact zero keeps later products out of the subnormal
    range, where CPU arithmetic is an order of magnitude slower.
    """
    cut = softmax_cut(x.dtype, xp=xp)
    if is_torch_namespace(xp):
        import torch

        x = x.clamp_(min=cut).exp_()
        return torch.nn.functional.threshold(x, 1.5 * math.exp(cut), 0.0, inplace=True)
    if is_numpy_namespace(xp):
        import numpy as np

        np.maximum(x, cut, out=x)
        np.exp(x, out=x)
        x *= x > 1.5 * math.exp(cut)
        return x
    zero = xp.zeros((), dtype=x.dtype, device=device(x))
    return xp.where(x > cut, xp.exp(xp.maximum(x, zero + cut)), zero)


def contiguous(x: Array, *, xp: Namespace) -> Array:
    """A row-major copy of a transposed view (faster tiles); no-op elsewhere."""
    if is_torch_namespace(xp):
        return x.contiguous()
    if is_numpy_namespace(xp):
        import numpy as np

        return np.ascontiguousarray(x)
    return x


def lse_last(x: Array, *, xp: Namespace, functional: bool = False) -> Array:
    """Max-shifted log-sum-exp over the last axis; consumes the temporary ``x``.

    Where the maximum is not finite (a slice of ``-inf``, a ``+inf``, a NaN)
    the result is that maximum, which is the exact log-sum-exp there.
    """
    top = xp.max(x, axis=-1, keepdims=True)
    finite = xp.isfinite(top)
    m = xp.where(finite, top, xp.zeros_like(top))
    if functional:
        x = exp_inplace(x - m, xp=xp, functional=True)
    else:
        x -= m
        x = exp_inplace(x, xp=xp)
    out = xp.log(xp.sum(x, axis=-1)) + m[..., 0]
    return xp.where(finite[..., 0], out, top[..., 0])
