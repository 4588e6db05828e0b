r"""The one home of the series, switches and constants shared by the discrete KLs.

Both KLs are sums of non-negative terms :math:`w\,\varphi(z)` with

.. math::

    \varphi(z) = e^{z} - 1 - z = \frac{z^2}{2}\bigl(1 + z H_1(z)\bigr), \qquad
    H_1(z) = \sum_{j \ge 0} \frac{2 z^j}{(j+3)!},

which vanishes to second order at 0, where ``expm1(z) - z`` cancels.
:func:`phi` evaluates it for an argument given as ``hi + lo`` (:mod:`._eft`):

* on ``[PHI_POLY_LO, PHI_POLY_HI]`` the polynomial, with the square
  :math:`z^2` exact, so that only the relative correction :math:`z H_1(z)`
  is rounded;
* above, ``expm1(z) - z`` (it cancels by at most a factor 1.5 there);
* below, ``e^z + (-1 - z)``, two non-negative terms;

each difference formed exactly by TwoSum, and the low part of the argument
entering as :math:`\varphi'(z)\,\mathrm{lo} = \mathrm{expm1}(z)\,\mathrm{lo}`.
Without ``precise`` (a float32 result evaluated in float64), three Taylor
terms below ``PLAIN_SWITCH`` and ``expm1(z) - z`` above suffice.

The truncation order of :math:`H_1` keeps the omitted terms below a quarter
of an ulp of the working dtype (float64, or float32 for narrower dtypes) on
``[PHI_POLY_LO, PHI_POLY_HI]``. :class:`Constants` collects, per working
dtype, the overflow and underflow switches, the split factor and the scale
used for tiny probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._lib._helpers import Array, Namespace
from ._eft import fast_two_sum, split_factor, two_prod, two_sum

__all__ = [
    "PHI_POLY_HI",
    "PHI_POLY_LO",
    "PLAIN_SWITCH",
    "Constants",
    "constants",
    "h1",
    "horner",
    "phi",
]

PHI_POLY_LO = -1.0
"""Below this ``phi`` is ``e^z + (-1 - z)``."""
PHI_POLY_HI = 2.0
"""Above this ``phi`` is ``expm1(z) - z``; in between, the Taylor polynomial."""
PLAIN_SWITCH = 1e-3
"""Without ``precise``, ``phi`` is a three-term series below this ``|z|``."""


def _taylor_h(first: int, count: int) -> tuple[float, ...]:
    """``2 / (j + 2)!`` for ``j = first, ..., first + count - 1`` (lowest order first)."""
    return tuple(2.0 / math.factorial(j + 2) for j in range(first, first + count))


@dataclass(frozen=True)
class Constants:
    """Per-working-dtype switches and coefficients (float64, or float32 and narrower)."""

    factor: float
    """Veltkamp's splitter for :func:`._eft.two_prod`."""
    h1_coef: tuple[float, ...]
    """Taylor coefficients of ``H_1`` on ``[PHI_POLY_LO, PHI_POLY_HI]``."""
    exp_max: float
    """``log(finfo.max) - 1``: ``exp`` of anything below is finite with room to spare."""
    direct_max: float
    """Largest exponent of the Bernoulli direct form (keeps ``two_prod`` from overflowing)."""
    tiny_logit: float
    """``log(smallest_normal * 2**mantissa)``: below it ``sigmoid(a) = e^a`` is within a
    factor ``2**mantissa`` of the subnormals, where the low halves of Veltkamp's
    split would be subnormal (and flushed to zero by XLA)."""
    shift: float
    """``K``: tiny probabilities are computed as ``e^(a + K)`` and scaled by ``e^-K``."""
    shift_hi: float
    shift_lo: float
    """``e^-K = shift_hi + shift_lo`` (mpmath at 300 bits, rounded to the dtype)."""


_WIDE = Constants(
    factor=split_factor(True),
    h1_coef=_taylor_h(1, 22),  # omitted: 2 * 2**22 / 25! < 6e-19 relative
    exp_max=math.log(1.7976931348623157e308) - 1.0,
    direct_max=600.0,
    tiny_logit=math.log(2.2250738585072014e-308) + 53 * math.log(2.0),
    shift=600.0,
    shift_hi=2.6503965530043108e-261,
    shift_lo=6.377342817491395e-278,
)
_NARROW = Constants(
    factor=split_factor(False),
    h1_coef=_taylor_h(1, 13),  # omitted: 2 * 2**13 / 16! < 8e-10 relative
    exp_max=math.log(3.4028234663852886e38) - 1.0,
    direct_max=40.0,
    tiny_logit=math.log(1.1754943508222875e-38) + 24 * math.log(2.0),
    shift=64.0,
    shift_hi=1.6038109389511792e-28,
    shift_lo=-4.840254038107756e-36,
)


def constants(dtype: object, *, xp: Namespace) -> Constants:
    """The constants for computing in ``dtype`` (float64 or float32)."""
    return _WIDE if dtype == xp.float64 else _NARROW


def horner(coef: tuple[float, ...], z: Array) -> Array:
    """``sum(coef[j] * z**j)`` by Horner's rule (``coef`` lowest order first)."""
    p = coef[-1] * z + coef[-2]
    for c in coef[-3::-1]:
        p = p * z + c
    return p


def h1(z: Array, c: Constants) -> Array:
    """``H_1(z) = 2 (e^z - 1 - z - z**2/2) / z**3`` on ``[PHI_POLY_LO, PHI_POLY_HI]``."""
    return horner(c.h1_coef, z)


def phi(
    z: Array, z_lo: Array, c: Constants, *, xp: Namespace, precise: bool
) -> tuple[Array, Array]:
    """``e^z - 1 - z`` at ``z + z_lo``, as ``(value, low part)``.

    With ``precise``, the square ``z**2`` and the differences of the two outer
    branches are formed exactly (the low part returned carries their errors);
    without, the low part is 0 (for a result that is rounded to a narrower
    dtype anyway). Every branch is evaluated on arguments clipped into its own
    range, so that none overflows and autograd sees no ``inf`` in a branch
    not taken.
    """
    zc = xp.clip(z, max=c.exp_max)
    em = xp.expm1(zc)
    if not precise:
        # For a float64 evaluation of a float32 result: expm1(z) - z loses
        # about log2(2/|z|) bits, harmless down to |z| = PLAIN_SWITCH; below,
        # three Taylor terms are exact to 2e-11 relative.
        zs = xp.clip(zc, min=-PLAIN_SWITCH, max=PLAIN_SWITCH)
        short = (zs * (0.5 * zs)) * (1.0 + zs * (1.0 / 3.0 + zs * (1.0 / 12.0)))
        return xp.where(xp.abs(zc) < PLAIN_SWITCH, short, em - zc), 0.0
    zp = xp.clip(zc, min=PHI_POLY_LO, max=PHI_POLY_HI)
    zd = xp.clip(zc, max=PHI_POLY_LO)
    in_poly = (zc >= PHI_POLY_LO) & (zc <= PHI_POLY_HI)
    below = zc < PHI_POLY_LO
    h_minus_1 = zp * h1(zp, c)
    # |z| in the polynomial range: (z^2 / 2) (1 + z H_1(z)), the square exact.
    sq, sq_lo = two_prod(zp, zp, factor=c.factor)
    half, half_lo = 0.5 * sq, 0.5 * sq_lo
    poly, poly_lo = fast_two_sum(half, half * h_minus_1 + half_lo * (1.0 + h_minus_1))
    # above: expm1(z) - z; below: e^z + (-1 - z), both terms non-negative.
    up, up_lo = two_sum(em, -zc)
    m, m_lo = two_sum(-1.0, -zd)
    down, down_lo = two_sum(xp.exp(zd), m)
    value = xp.where(in_poly, poly, xp.where(below, down, up))
    low = xp.where(in_poly, poly_lo, xp.where(below, down_lo + m_lo, up_lo))
    return value, low + em * z_lo
