r"""The one home of :math:`h(d) = (e^d - 1 - d)/2`, the variance term of every Gaussian KL.

Written as ``exp(d) - 1 - d`` (the usual VAE code) or ``r - 1 - log(r)``
(torch.distributions), :math:`h` loses every digit as :math:`d \to 0`, which
is exactly where inactive latents sit. Here it is :math:`d^2 g(d)` with a
polynomial :math:`g` for :math:`|d| <` :data:`SWITCH` and
``(expm1(d) - d) / 2`` beyond: below ``SWITCH`` the ``expm1`` form cancels
(its error grows like :math:`2/|d|` ulps), above it the polynomial would need
more terms. At ``SWITCH = 0.75`` both stay within about 3 ulps.

The coefficients of :math:`g` (float64: its Taylor series, float32 and
narrower: a minimax fit) are defined here and nowhere else; the native eager
kernels in :mod:`._eager` use these same coefficients and the same switch in
float64, and in float32 the switch-free lower-bound form defined below.
"""

from __future__ import annotations

import math

from .._lib._helpers import Array, Namespace

__all__ = [
    "SWITCH",
    "WIDE_EXP_BIAS",
    "WIDE_LOWER_COEFFICIENTS",
    "half_expm1mx",
    "poly_coefficients",
    "poly_half_expm1mx",
    "taylor_coefficients",
]

SWITCH = 0.75
"""Below this ``|d|`` the polynomial is used, above it ``(expm1(d) - d) / 2``."""

# Minimax fit of g(d) = (e^d - 1 - d) / (2 d^2) on [-0.75, 0.75], degree 6:
# max relative error 2.2e-8 (< 0.4 ulp of float32). Fitted with mpmath
# references by iteratively reweighted least squares on Chebyshev nodes.
_MINIMAX32 = (
    0.24999999685411955,
    0.0833333664631178,
    0.020833417613669164,
    0.004166244468874397,
    0.0006940489642438055,
    0.00010062112829112464,
    1.2941737696080258e-05,
)


def taylor_coefficients(degree: int) -> tuple[float, ...]:
    """Taylor coefficients of ``g(d) = h(d) / d**2``: ``1 / (2 (j + 2)!)``, j = 0..degree."""
    return tuple(1.0 / (2.0 * math.factorial(j + 2)) for j in range(degree + 1))


# Degree 15: truncation below 1e-17 relative on |d| < 0.75.
_TAYLOR64 = taylor_coefficients(15)

WIDE_LOWER_COEFFICIENTS = taylor_coefficients(1)
"""``(1/4, 1/12)``: for every real ``d``, ``d^2 (1/4 + d/12) <= h(d)`` (the
Taylor polynomial of :math:`e^d - 1 - d` cut after an odd power is a lower
bound: its remainder :math:`e^\\xi d^4 / 24` is positive)."""

WIDE_EXP_BIAS = 2.0**-51
"""For a float32 result computed in float64 (the eager float32 kernels):
:math:`h(d) = \\tfrac12 \\max\\bigl(d^2 (\\tfrac12 + \\tfrac d6),\\;
e^d - (1 + \\delta) - d\\bigr)` with this :math:`\\delta` (two ulps of 1).
Both arguments are lower bounds of :math:`2h` (the second because
:math:`\\delta` exceeds the error of a faithful float64 ``exp`` near 1), so
the maximum is the better one, with no switch constant: the series wins
only for :math:`|d| \\lesssim 3.5 \\cdot 10^{-4}`, where its truncation is
below :math:`10^{-8}` relative, and the ``exp`` form's bias
:math:`\\delta / 2h < 2 \\cdot 10^{-8}` wherever it wins: each is < 0.2
float32 ulp. In the same way :math:`\\operatorname{expm1}(d) = \\max(d,\\;
e^d - (1 + \\delta))` to < 0.3 float32 ulp (the gradient)."""


def poly_coefficients(wide: bool) -> tuple[float, ...]:
    """Coefficients of ``g(d) = h(d) / d**2``, lowest order first.

    ``wide`` (float64): the Taylor series to degree 15; otherwise (float32 and
    narrower): the degree-6 minimax fit.
    """
    return _TAYLOR64 if wide else _MINIMAX32


def poly_half_expm1mx(d: Array, *, xp: Namespace) -> Array:
    """``(e^d - 1 - d) / 2`` as ``d^2 g(d)`` (Horner), valid for ``|d| < SWITCH``."""
    coef = poly_coefficients(bool(d.dtype == xp.float64))
    p = coef[-1] * d + coef[-2]
    for c in coef[-3::-1]:
        p = p * d + c
    return (d * d) * p


def half_expm1mx(d: Array, *, xp: Namespace) -> tuple[Array, Array, Array]:
    """``(e^d - 1 - d) / 2`` to ~3 ulps, without intermediate overflow.

    Returns ``(h, e, scale)`` such that the value is ``h * scale``, with
    ``e = expm1(min(d, d_max))`` (for first-order corrections) and
    ``scale = exp(max(d, d_max) - d_max)``, which is 1 except where ``e^d``
    itself would overflow although ``e^d / 2`` does not.
    """
    poly = poly_half_expm1mx(d, xp=xp)
    d_max = math.log(float(xp.finfo(d.dtype).max)) - 1.0
    dc = xp.clip(d, max=d_max)
    e = xp.expm1(dc)
    direct = 0.5 * (e - dc)
    scale = xp.exp(xp.clip(d, min=d_max) - d_max)
    return xp.where(xp.abs(d) < SWITCH, poly, direct), e, scale
