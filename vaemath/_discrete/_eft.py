r"""Error-free transformations: sums and products carried as ``hi + lo``.

A double-word number ``(hi, lo)`` stands for the unevaluated sum ``hi + lo``
with ``|lo| <= ulp(hi) / 2``. The discrete KLs pass the few quantities whose
rounding would otherwise be amplified (the logit difference, the Bernoulli
probabilities, the exponents of the Bernoulli cumulant generating function)
through these transformations, so that the only rounding errors left are
those of ``exp``/``expm1``/``log1p`` and of one final operation.

All are written in standard Array-API arithmetic; they are exact in binary
floating point with round-to-nearest, without FMA, as long as nothing
overflows or underflows (Dekker 1971; Knuth, TAOCP vol. 2, 4.2.2; Muller et
al., *Handbook of Floating-Point Arithmetic*, 2nd ed., 2018, ch. 4). Under
autograd the low parts have derivative zero (they are, symbolically, zero
functions), so gradients are those of the high parts.
"""

from __future__ import annotations

from .._lib._helpers import Array, Namespace

__all__ = ["dw_div", "dw_sum", "fast_two_sum", "split_factor", "two_prod", "two_sum"]


def split_factor(wide: bool) -> float:
    """Veltkamp's splitter ``2**ceil(p/2) + 1`` for precision ``p`` = 53 or 24."""
    return 134217729.0 if wide else 4097.0


def two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``a + b = s + e`` exactly (Knuth's TwoSum, no ordering needed)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def fast_two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``a + b = s + e`` exactly, valid when ``|a| >= |b|`` (Dekker's Fast2Sum)."""
    s = a + b
    return s, b - (s - a)


def _split(x: Array, factor: float) -> tuple[Array, Array]:
    c = factor * x
    hi = c - (c - x)
    return hi, x - hi


def two_prod(x: Array, y: Array, *, factor: float) -> tuple[Array, Array]:
    """``x * y = p + e`` exactly (Dekker's product with Veltkamp splitting).

    ``factor`` is :func:`split_factor` of the dtype; ``|x|`` and ``|y|`` must
    stay below ``finfo.max / factor``.
    """
    p = x * y
    xh, xl = _split(x, factor)
    yh, yl = _split(y, factor)
    return p, ((xh * yh - p) + xh * yl + xl * yh) + xl * yl


def dw_div(x: Array, s: Array, s_lo: Array, *, factor: float) -> tuple[Array, Array]:
    """``x / (s + s_lo)`` as ``q + q_lo`` to about twice the working precision.

    The remainder ``x - q s`` is exact (``q s`` by :func:`two_prod`, the
    subtraction by Sterbenz's lemma); ``s_lo`` enters to first order.
    """
    q = x / s
    p, e = two_prod(q, s, factor=factor)
    return q, (((x - p) - e) - q * s_lo) / s


def dw_sum(x: Array, x_lo: Array | float, *, axis: int, xp: Namespace) -> tuple[Array, Array]:
    """``sum(x + x_lo)`` along ``axis`` as ``(hi, lo)``, both with the axis kept (size 1).

    A pairwise tree of :func:`two_sum`: the high parts are added exactly, so
    the only rounding left is that of the low parts (second order), about
    ``K u**2`` for ``K`` terms instead of the ``log2(K) u`` of a pairwise sum.
    ``x_lo`` may be the scalar 0.
    """
    hi = xp.moveaxis(x, axis, -1)
    lo = xp.moveaxis(x_lo, axis, -1) if not isinstance(x_lo, float) else xp.zeros_like(hi)
    while hi.shape[-1] > 1:
        if hi.shape[-1] % 2:
            hi = xp.concat([hi, xp.zeros_like(hi[..., :1])], axis=-1)
            lo = xp.concat([lo, xp.zeros_like(lo[..., :1])], axis=-1)
        s, e = two_sum(hi[..., 0::2], hi[..., 1::2])
        lo = (lo[..., 0::2] + lo[..., 1::2]) + e
        hi = s
    return xp.moveaxis(hi, -1, axis), xp.moveaxis(lo, -1, axis)
