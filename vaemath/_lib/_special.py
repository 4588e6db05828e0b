r"""The error function on any Array-API library: ``erf``, ``erfc`` and ``erfcx``.

The Array API standard has no error function. :func:`erf`, :func:`erfc` and
:func:`erfcx` (the scaled complement :math:`e^{z^2} \operatorname{erfc} z`) take
the library's own where it has a good one (:func:`special_source` names it):

* NumPy: ``scipy.special`` when SciPy is installed;
* PyTorch: ``torch.special`` (differentiable, CPU and CUDA);
* JAX: ``jax.scipy.special`` for erf and erfc. Not for erfcx: JAX evaluates
  :math:`e^{z^2} \operatorname{erfc} z` below its asymptotic switch, and
  :math:`\operatorname{erfc} z` is flushed to 0 just below it, so JAX's erfcx is
  0 on about :math:`[9.13, 9.42]` (float32) and :math:`[26.55, 26.64]` (float64);

and otherwise (array-api-strict, NumPy without SciPy, JAX's erfcx, any other
library) the implementations of this module, written in standard calls only
(:func:`own_erf`, :func:`own_erfc`, :func:`own_erfcx`), which autograd and
tracing go through like any other array code. They compute in
:func:`~vaemath._lib._helpers.working_dtype` (float32 input on the NumPy-backed
libraries in float64, rounded once; elsewhere in the input's dtype, with the
shorter float32 expansions). Their accuracy against mpmath, in ulps, is
measured by ``docs/scripts/mmd_uniform.py`` and tested in
``tests/test_mmd_uniform.py``.

The own implementations
-----------------------

One Chebyshev expansion of the scaled complement covers :math:`z \ge 0`
(the form of Schonfelder 1978): with :math:`K = 3`,

.. math::

    \operatorname{erfcx}(z) = \frac{1}{1 + 2z} \sum_{j} a_j T_j(t), \qquad
    t = \frac{z - K}{z + K} = 1 - \frac{2K}{z + K} \in [-1, 1),

where :math:`(1 + 2z) \operatorname{erfcx}(z)` is smooth in :math:`t` up to
:math:`t = 1` (its limit :math:`2/\sqrt\pi`). Near 0 the error function itself
is an even Chebyshev expansion,

.. math::

    \operatorname{erf}(z) = z \sum_j b_j T_j(2z^2 - 1), \qquad |z| \le 1.

The coefficients :math:`a_j, b_j` are the Chebyshev interpolation coefficients
of these two functions at 100 (:math:`a`) and 40 (:math:`b`) Chebyshev points of
the first kind, computed with mpmath at 50 digits and rounded to float64
(``tests/test_mmd_uniform.py::TestOwnSpecial::test_coefficients`` recomputes
them). Truncated to 25 and 13 terms the expansions are accurate to below
:math:`10^{-17}` relative; float32 uses the first 13 and 7 (below
:math:`5 \cdot 10^{-9}`). They are summed with Clenshaw's recurrence. The rest
is identities chosen so that nothing cancels:

* :math:`\operatorname{erf} z = \operatorname{sign} z\,(1 - \operatorname{erfc}|z|)`
  for :math:`|z| > 1` (:math:`\operatorname{erfc} 1 \approx 0.16`);
* :math:`\operatorname{erfc} z = 1 - \operatorname{erf} z` for :math:`z < 1/2`, and
  :math:`\operatorname{erfcx}(z)\, e^{-z^2}` for :math:`z \ge 1/2`;
* :math:`\operatorname{erfcx}(z) = e^{z^2} (1 - \operatorname{erf} z)` for
  :math:`|z| < 1/2`, and :math:`\operatorname{erfcx}(-z) = 2 e^{z^2} -
  \operatorname{erfcx}(z)` for :math:`z \ge 1/2`;
* :math:`e^{\pm z^2}` as :math:`e^{\pm z_h^2} e^{\pm (z - z_h)(z + z_h)}` with
  :math:`z_h = \lfloor 16 z \rfloor / 16`, whose square is exact (W. J. Cody's
  splitting), so the rounding of :math:`z^2` (an error of :math:`z^2 \varepsilon`
  relative, 700 ulps where float64 ``erfc`` underflows) does not enter.

References
----------
J. L. Schonfelder, "Chebyshev expansions for the error and related functions",
Math. Comp. 32 (1978) 1232-1240. W. J. Cody, "Rational Chebyshev approximations
for the error function", Math. Comp. 23 (1969) 631-637.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from ._compat import device, is_jax_namespace, is_numpy_namespace, is_torch_namespace
from ._helpers import Array, Namespace, in_working_dtype

__all__ = [
    "erf",
    "erfc",
    "erfcx",
    "own_erf",
    "own_erfc",
    "own_erfcx",
    "special_source",
]

# -- the own implementations ------------------------------------------------------------

# Chebyshev coefficients a_j of (1 + 2z) erfcx(z) in t = (z - K) / (z + K), K = 3.
_ERFCX_K = 3.0
_ERFCX_COEFFS = (
    1.17756257419656,
    0.005353904539615676,
    -0.09377550342284209,
    0.05436652555744322,
    -0.018976596707845208,
    0.004453426061462712,
    -0.0006335531710553147,
    1.7661719523171593e-05,
    1.2841532864056671e-05,
    -2.0072285659059913e-06,
    -1.807522790414837e-07,
    7.549828343825093e-08,
    1.885668523838603e-09,
    -2.699519049798364e-09,
    -1.460079119939105e-11,
    1.0361607445969489e-10,
    1.475715976623473e-12,
    -4.277340064396911e-12,
    -2.07922492859799e-13,
    1.8134502003176963e-13,
    1.973425574544739e-14,
    -7.287943737592673e-15,
    -1.5169878690228116e-15,
    2.3514112258781403e-16,
    1.0006111691821667e-16,
)
# Chebyshev coefficients b_j of erf(z) / z in u = 2 z^2 - 1, |z| <= 1.
_ERF_COEFFS = (
    0.9754769393826541,
    -0.14226120510371365,
    0.010035582187599796,
    -0.0005768764699767485,
    2.741993125219606e-05,
    -1.1043175507344507e-06,
    3.8488755420345036e-08,
    -1.1808582533875466e-09,
    3.2334215826050907e-11,
    -7.991015947004549e-13,
    1.7990725113961456e-14,
    -3.718635487818693e-16,
    7.103599003714253e-18,
)
# Terms kept in float32 (and other dtypes with at most 24 significand bits).
_FLOAT32_TERMS = {"erfcx": 13, "erf": 7}
# |z| above which exp(-z^2) is 0 and exp(z^2) is inf in every dtype (clamped there).
_SQUARE_CLAMP = 64.0


def _const(value: float, like: Array, *, xp: Namespace) -> Array:
    return xp.asarray(value, dtype=like.dtype, device=device(like))


def _terms(coeffs: Sequence[float], kind: str, like: Array, *, xp: Namespace) -> Sequence[float]:
    if xp.finfo(like.dtype).eps > 1e-10:
        return coeffs[: _FLOAT32_TERMS[kind]]
    return coeffs


def _clenshaw(coeffs: Sequence[float], t: Array, *, xp: Namespace) -> Array:
    """``sum_j coeffs[j] T_j(t)`` by Clenshaw's recurrence."""
    t2 = 2.0 * t
    b1 = xp.full_like(t, coeffs[-1])
    b2 = xp.zeros_like(t)
    for c in reversed(coeffs[1:-1]):
        b1, b2 = t2 * b1 - b2 + c, b1
    return t * b1 - b2 + coeffs[0]


def _exp_square(a: Array, sign: float, *, xp: Namespace) -> Array:
    """``exp(sign * a^2)`` for ``a >= 0`` with Cody's split of the square."""
    a = xp.minimum(a, _const(_SQUARE_CLAMP, a, xp=xp))  # NaN stays NaN
    hi = xp.floor(a * 16.0) / 16.0
    return xp.exp(sign * (hi * hi)) * xp.exp(sign * ((a - hi) * (a + hi)))


def _erfcx_nonnegative(a: Array, *, xp: Namespace) -> Array:
    """The Chebyshev expansion of ``erfcx(a)``, ``a >= 0`` (``a = inf`` gives 0)."""
    t = 1.0 - (2.0 * _ERFCX_K) / (a + _ERFCX_K)
    coeffs = _terms(_ERFCX_COEFFS, "erfcx", a, xp=xp)
    return _clenshaw(coeffs, t, xp=xp) / (1.0 + 2.0 * a)


def _erf_small(z: Array, *, xp: Namespace) -> Array:
    """The Chebyshev expansion of ``erf(z)``, ``|z| <= 1``."""
    coeffs = _terms(_ERF_COEFFS, "erf", z, xp=xp)
    return z * _clenshaw(coeffs, 2.0 * (z * z) - 1.0, xp=xp)


def _erfc_nonnegative(a: Array, *, xp: Namespace) -> Array:
    """``erfc(a) = erfcx(a) exp(-a^2)`` for ``a >= 1/2``."""
    return _erfcx_nonnegative(a, xp=xp) * _exp_square(a, -1.0, xp=xp)


# Each branch below gets safe stand-in inputs where it is not selected
# (the "double where"): an unselected inf or NaN would otherwise reach the
# gradient as 0 * inf. A NaN input fails every comparison, so the last
# branch is the one that receives it, unmodified.


def own_erf(z: Array, *, xp: Namespace) -> Array:
    """``erf(z)`` in standard Array-API calls (see the module docstring)."""
    return in_working_dtype(_own_erf, z, xp=xp)


def own_erfc(z: Array, *, xp: Namespace) -> Array:
    """``erfc(z)`` in standard Array-API calls (see the module docstring)."""
    return in_working_dtype(_own_erfc, z, xp=xp)


def own_erfcx(z: Array, *, xp: Namespace) -> Array:
    """``erfcx(z) = exp(z^2) erfc(z)`` in standard Array-API calls (see the module docstring)."""
    return in_working_dtype(_own_erfcx, z, xp=xp)


def _own_erf(z: Array, *, xp: Namespace) -> Array:
    a = xp.abs(z)
    small = a <= 1.0
    z_small = xp.where(small, z, _const(0.5, z, xp=xp))
    a_large = xp.where(small, _const(2.0, z, xp=xp), a)
    large = 1.0 - _erfc_nonnegative(a_large, xp=xp)
    large = xp.where(z < 0.0, -large, large)
    return xp.where(small, _erf_small(z_small, xp=xp), large)


def _own_erfc(z: Array, *, xp: Namespace) -> Array:
    low = z < 0.5
    z_low = xp.where(low, z, _const(0.0, z, xp=xp))
    z_high = xp.where(low, _const(1.0, z, xp=xp), z)
    return xp.where(low, 1.0 - _own_erf(z_low, xp=xp), _erfc_nonnegative(z_high, xp=xp))


def _own_erfcx(z: Array, *, xp: Namespace) -> Array:
    a = xp.abs(z)
    small = a < 0.5
    z_small = xp.where(small, z, _const(0.0, z, xp=xp))
    near_zero = xp.exp(z_small * z_small) * (1.0 - _erf_small(z_small, xp=xp))
    a_large = xp.where(small, _const(1.0, z, xp=xp), a)
    tail = _erfcx_nonnegative(a_large, xp=xp)
    negative = z <= -0.5
    a_negative = xp.where(negative, a, _const(0.0, z, xp=xp))
    large = xp.where(negative, 2.0 * _exp_square(a_negative, 1.0, xp=xp) - tail, tail)
    return xp.where(small, near_zero, large)


# -- dispatch ----------------------------------------------------------------------------

_FUNCTIONS = ("erf", "erfc", "erfcx")


@functools.cache
def _scipy_special() -> ModuleType | None:
    try:
        import scipy.special
    except ImportError:  # pragma: no cover - SciPy is a test dependency
        return None
    return scipy.special


def _native(xp: Namespace, name: str) -> tuple[str, Any] | None:
    """``(source, module)`` of the library's own ``name``, or None."""
    if is_torch_namespace(xp):
        import torch

        return "torch.special", torch.special
    if is_jax_namespace(xp):  # pragma: no cover - exercised only where jax is installed
        if name == "erfcx":
            # jax.scipy.special.erfcx is exp(z^2) erfc(z) below its asymptotic
            # switch, and erfc is flushed to 0 just below it: erfcx = 0 on
            # [9.13, 9.42] (float32) and [26.55, 26.64] (float64).
            return None
        import jax.scipy.special

        return "jax.scipy.special", jax.scipy.special
    if is_numpy_namespace(xp):
        module = _scipy_special()
        return None if module is None else ("scipy.special", module)
    return None


def special_source(xp: Namespace, name: str = "erf") -> str:
    """Where ``name`` (``"erf"``, ``"erfc"`` or ``"erfcx"``) comes from for namespace ``xp``."""
    if name not in _FUNCTIONS:
        msg = f"`name` must be one of {', '.join(map(repr, _FUNCTIONS))}, got {name!r}"
        raise ValueError(msg)
    native = _native(xp, name)
    return "vaemath" if native is None else native[0]


def _dispatch(name: str, own: Callable[..., Array], z: Array, *, xp: Namespace) -> Array:
    native = _native(xp, name)
    if native is None:
        return own(z, xp=xp)
    out = getattr(native[1], name)(z)
    if is_numpy_namespace(xp):
        import numpy as np

        return np.asarray(out)  # SciPy ufuncs give NumPy scalars for 0-d input
    return out


def erf(z: Array, *, xp: Namespace) -> Array:
    """The error function, native where ``xp`` has one (:func:`special_source`)."""
    return _dispatch("erf", own_erf, z, xp=xp)


def erfc(z: Array, *, xp: Namespace) -> Array:
    """The complementary error function, native where ``xp`` has one."""
    return _dispatch("erfc", own_erfc, z, xp=xp)


def erfcx(z: Array, *, xp: Namespace) -> Array:
    """``exp(z^2) erfc(z)``, native where ``xp`` has a good one."""
    return _dispatch("erfcx", own_erfcx, z, xp=xp)
