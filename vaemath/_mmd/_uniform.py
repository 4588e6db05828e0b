r"""MMD² between a sample and the uniform distribution on a box, with no prior samples.

:func:`mmd2_uniform_prior` and its ``xp=`` twin :func:`uniform_prior_mmd2`. The
prior's two expectations are closed forms in the error function
(:mod:`vaemath._lib._special`: native where the library has one); the
sample-sample term is the U-statistic of the Gram-block engine
(:mod:`._blocks`). Derivations and accuracy: ``docs/mmd.rst``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

from .._lib._compat import device, is_jax_namespace
from .._lib._helpers import Array, Namespace, broadcast_shapes, numpy_quiet, resolve
from .._lib._special import erf, erfcx
from ._bandwidth import check_count, check_samples, fixed_scales, readable
from ._blocks import block_sum
from ._kernels import diagonal_sum

__all__ = ["mmd2_uniform_prior", "uniform_prior_mmd2"]

_SQRT_HALF = math.sqrt(0.5)
_LOG_SQRT_HALF_PI = 0.5 * math.log(0.5 * math.pi)
# Below this value of delta * max(1, |m|) (half-width and centre offset of the
# box in bandwidths) the cross term uses its Taylor series: the difference of
# two erfc would lose log2(1 / delta) bits there.
_NARROW = 0.25
# Terms a_0, a_2, ..., a_{2K} of that series: relative truncation error below
# 2e-18 (K = 7) and 3e-11 (K = 4) for delta * max(1, |m|) <= 1/4.
_NARROW_TERMS = {"float64": 7, "float32": 4}
# Below this width / bandwidth the prior term uses its Taylor series (r^2
# underflows, and the closed form halves its digits, before 0).
_SMALL_WIDTH = 0.05


# -- the box -------------------------------------------------------------------------------


def _check_scalar_box(low: object, high: object) -> None:
    """``low < high``, both finite, when both are Python scalars (before any array exists)."""
    scalars = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)]
    if not all(scalars):
        return
    lo, hi = float(low), float(high)  # type: ignore[arg-type]
    if math.isnan(lo) or math.isnan(hi):
        return  # NaN in, NaN out
    if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
        msg = f"`low` and `high` must be finite with low < high, got low={lo!r}, high={hi!r}"
        raise ValueError(msg)


def _checked_width(low: Array, high: Array, *, checked: bool, xp: Namespace) -> Array:
    """``high - low``; ``ValueError`` unless ``low < high``, both finite (NaN passes).

    Where the values cannot be read (tracing), an invalid box gives a NaN width
    instead, so that the estimate is NaN rather than a finite number.
    """
    width = high - low
    if checked:
        return width
    inf = math.inf
    invalid = (low >= high) | (xp.abs(low) == inf) | (xp.abs(high) == inf)
    if readable(invalid, xp=xp):
        if bool(xp.any(invalid)):
            msg = "`low` and `high` must be finite with low < high in every dimension"
            raise ValueError(msg)
        return width
    return xp.where(invalid, xp.full_like(width, math.nan), width)


# -- the prior's expectations, per dimension ----------------------------------------------


def _log_mean_kernel(
    x: Array, low: Array, high: Array, width: Array, h: float, *, xp: Namespace
) -> Array:
    r"""``log E_{y ~ U[low, high]} exp(-(x - y)^2 / (2 h^2))``, elementwise over ``(n, D)``.

    With :math:`\alpha = (l - x)/h`, :math:`\beta = (u - x)/h`, half-width
    :math:`\delta = (u - l)/(2h)` and centre offset :math:`m = (c - x)/h`, the
    mean is :math:`\frac{\sqrt{2\pi}}{2\delta}\,[\Phi(\beta) - \Phi(\alpha)]`,
    computed in one of three forms, none of which cancels:

    * box around x (:math:`\alpha \le 0 \le \beta`): a sum of two erf of
      non-negative arguments;
    * x outside the box, :math:`p \ge 0` the distance to the near edge, in
      bandwidths: :math:`Q(p) - Q(p + 2\delta)` in logs, through erfcx, so
      neither term underflows;
    * narrow box (:math:`\delta \max(1, |m|) \le 1/4`): :math:`e^{-m^2/2} S`,
      :math:`S = \sum_k \mathrm{He}_{2k}(m)\,\delta^{2k} / (2k + 1)!`, where
      the two forms above would lose :math:`\log_2(1/\delta)` bits.
    """
    dtype, dev = x.dtype, device(x)

    def const(value: float) -> Array:
        return xp.asarray(value, dtype=dtype, device=dev)

    alpha = (low - x) / h
    beta = (high - x) / h
    delta = width / (2.0 * h)
    m = ((low + 0.5 * width) - x) / h
    log_two_delta = xp.log(2.0 * delta)
    narrow = delta * xp.maximum(xp.abs(m), const(1.0)) <= _NARROW
    inside = (alpha <= 0.0) & (beta >= 0.0) & ~narrow
    # The outside branch is the last one: a NaN fails every comparison and lands
    # there unmodified. Every branch gets safe stand-ins where it is not taken
    # (an unselected inf would reach the gradient as 0 * inf).
    outside = ~(narrow | inside)

    # box around x: Phi(beta) - Phi(alpha) = (erf(beta / sqrt2) + erf(-alpha / sqrt2)) / 2
    a_in = xp.where(inside, -alpha, const(1.0))
    b_in = xp.where(inside, beta, const(1.0))
    log_inside = (
        _LOG_SQRT_HALF_PI
        + xp.log(erf(a_in * _SQRT_HALF, xp=xp) + erf(b_in * _SQRT_HALF, xp=xp))
        - log_two_delta
    )

    # x outside: Q(p) - Q(q) = Q(p) (1 - e^L), Q(p) = erfcx(p / sqrt2) e^{-p^2/2} / 2,
    # L = log(erfcx(q / sqrt2) / erfcx(p / sqrt2)) - (q^2 - p^2) / 2, q = p + 2 delta.
    near = xp.where(x < low, alpha, -beta)
    p = xp.where(outside, near, const(1.0))
    g_p = erfcx(p * _SQRT_HALF, xp=xp)
    g_q = erfcx((p + 2.0 * delta) * _SQRT_HALF, xp=xp)
    big_l = xp.log(g_q / g_p) - (2.0 * delta) * (p + delta)
    log_outside = (
        _LOG_SQRT_HALF_PI + xp.log(g_p) - log_two_delta - 0.5 * (p * p) + xp.log(-xp.expm1(big_l))
    )

    # narrow box: a_n = He_n(m) delta^n, a_{n+1} = (m delta) a_n - n delta^2 a_{n-1}
    m_n = xp.where(narrow, m, const(0.0))
    d_n = xp.where(narrow, delta, const(0.1))
    u, d2 = m_n * d_n, d_n * d_n
    terms = _NARROW_TERMS["float32" if xp.finfo(dtype).eps > 1e-10 else "float64"]
    a_prev, a_cur = xp.ones_like(u), u
    total = xp.ones_like(u)
    factorial = 1.0
    for n in range(1, 2 * terms):
        a_prev, a_cur = a_cur, u * a_cur - float(n) * d2 * a_prev
        if n % 2:  # a_cur is a_{n + 1}, n + 1 even
            factorial *= (n + 1) * (n + 2)  # (n + 2)!
            total = total + a_cur / factorial
    log_narrow = -0.5 * (m_n * m_n) + xp.log(total)

    return xp.where(narrow, log_narrow, xp.where(inside, log_inside, log_outside))


def _log_mean_kernel_pair(r: Array, *, xp: Namespace) -> Array:
    r"""``log E_{y, y' ~ U[0, w]} exp(-(y - y')^2 / (2 h^2))`` per dimension, ``r = w / h``.

    :math:`\frac{2}{r}\bigl[\sqrt{\pi/2}\,\operatorname{erf}(r/\sqrt2)
    + \operatorname{expm1}(-r^2/2)/r\bigr]`, and its Taylor series
    :math:`1 - r^2/12 + r^4/120 - r^6/1344 + r^8/17280` for small :math:`r`.
    """
    dtype, dev = r.dtype, device(r)
    small = r <= _SMALL_WIDTH
    r_s = xp.where(small, r, xp.asarray(0.01, dtype=dtype, device=dev))
    r_l = xp.where(small, xp.asarray(1.0, dtype=dtype, device=dev), r)
    s = r_s * r_s
    series = s * (-1.0 / 12.0 + s * (1.0 / 120.0 + s * (-1.0 / 1344.0 + s * (1.0 / 17280.0))))
    bracket = (
        math.sqrt(0.5 * math.pi) * erf(r_l * _SQRT_HALF, xp=xp) + xp.expm1(-0.5 * (r_l * r_l)) / r_l
    )
    closed = math.log(2.0) - xp.log(r_l) + xp.log(bracket)
    return xp.where(small, xp.log1p(series), closed)


# -- the estimator -------------------------------------------------------------------------


@numpy_quiet
def mmd2_uniform_prior(
    x: Array,
    low: Array | float = -1.0,
    high: Array | float = 1.0,
    *,
    bandwidth: float | Sequence[float] = 1.0,
) -> Array:
    r"""MMD² between a sample and the uniform distribution on a box, with no prior samples.

    The RBF kernel :math:`k(x, y) = \exp(-\lVert x - y\rVert^2 / (2h^2))`
    against :math:`U = \mathcal U\bigl(\prod_d [l_d, u_d]\bigr)`: both
    expectations over :math:`U` in closed form, the sample-sample term the
    U-statistic, so the estimate is unbiased for :math:`\mathrm{MMD}^2(q, U)`.

    Parameters
    ----------
    x : array of shape ``(n, D)``
        Sample, e.g. encoder samples ``z`` of a minibatch, :math:`n \ge 2`.
    low, high : array of shape ``(D,)`` or float, optional
        The box :math:`\prod_d [l_d, u_d]`, finite with :math:`l_d < u_d`
        (default :math:`[-1, 1]^D`). Broadcast to ``(D,)``.
    bandwidth : float or sequence of float, optional
        RBF bandwidth :math:`h > 0` (default 1.0); a sequence sums the kernels.

    Returns
    -------
    array of shape ``()``
        The estimate (unbiased, can be negative), in the floating dtype of the
        inputs.

    Raises
    ------
    ValueError
        ``x`` not 2-D, ``low`` / ``high`` that do not broadcast to ``(D,)``,
        fewer than 2 samples, a non-positive bandwidth, or a box that is not
        finite with ``low < high`` (checked on the values: one device
        synchronisation on an accelerator when the box is an array; under
        ``torch.compile`` / ``jax.jit`` the estimate is NaN instead).
    TypeError
        Arrays from different libraries.

    See Also
    --------
    mmd2_gaussian_prior : The same against a diagonal Gaussian.
    mmd2 : The two-sample estimators, e.g. against samples of the box.

    Notes
    -----
    With :math:`\Phi` the standard normal CDF, :math:`w_d = u_d - l_d` and
    :math:`r_d = w_d / h`, the kernel and :math:`U` factorise over dimensions:

    .. math::

        \mathbb E_{y \sim U}\, k(x, y) = \prod_{d=1}^{D}
        \frac{h\sqrt{2\pi}}{w_d}
        \Bigl[\Phi\Bigl(\frac{u_d - x_d}{h}\Bigr) - \Phi\Bigl(\frac{l_d - x_d}{h}\Bigr)\Bigr],

        \mathbb E_{y, y' \sim U}\, k(y, y') = \prod_{d=1}^{D}
        \frac{2}{r_d^2}\Bigl[r_d \sqrt{\tfrac{\pi}{2}}\,
        \operatorname{erf}\Bigl(\frac{r_d}{\sqrt 2}\Bigr) + e^{-r_d^2/2} - 1\Bigr],

    and

    .. math::

        \widehat{\mathrm{MMD}}^2 = \frac{1}{n(n-1)} \sum_{i \ne j} k(x_i, x_j)
        - \frac{2}{n} \sum_i \mathbb E_{y}\, k(x_i, y)
        + \mathbb E_{y, y'}\, k(y, y').

    The products are exponentials of sums of logarithms; each factor is
    evaluated in a form that does not cancel (erfcx for points outside the box,
    Taylor series for boxes narrower than the bandwidth), see ``docs/mmd.rst``.
    Memory: :math:`O(nD)` plus the chunks of the Gram-block engine of
    :func:`mmd2`; no :math:`(n, n, D)` array is formed.

    References
    ----------
    A. Gretton, K. Borgwardt, M. Rasch, B. Schölkopf, A. Smola, "A kernel
    two-sample test", JMLR 13 (2012).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import mmd2_uniform_prior
    >>> z = np.array([[0.0, 0.0], [2.0, 0.5]])
    >>> round(float(mmd2_uniform_prior(z)), 6)  # against U([-1, 1]^2); a U-statistic
    -0.183381

    A box per dimension, and two bandwidths (the sum of the kernels):

    >>> low, high = np.array([-1.0, 0.0]), np.array([1.0, 4.0])
    >>> round(float(mmd2_uniform_prior(z, low, high, bandwidth=[0.5, 2.0])), 6)
    0.339871

    A sample of the box itself gives about 0:

    >>> rng = np.random.default_rng(0)
    >>> abs(float(mmd2_uniform_prior(rng.uniform(-1.0, 1.0, size=(1000, 2))))) < 1e-3
    True
    """
    _check_scalar_box(low, high)
    checked = not any(hasattr(v, "shape") for v in (low, high))
    xp, (x, low, high) = resolve({"x": x, "low": low, "high": high})
    return _uniform_prior_mmd2(x, low, high, bandwidth=bandwidth, checked=checked, xp=xp)


def uniform_prior_mmd2(
    x: Array,
    low: Array,
    high: Array,
    *,
    bandwidth: float | Sequence[float],
    xp: Namespace,
) -> Array:
    """:func:`mmd2_uniform_prior` on arrays of one floating dtype of namespace ``xp``."""
    return _uniform_prior_mmd2(x, low, high, bandwidth=bandwidth, checked=False, xp=xp)


def _uniform_prior_mmd2(
    x: Array,
    low: Array,
    high: Array,
    *,
    bandwidth: float | Sequence[float],
    checked: bool,
    xp: Namespace,
) -> Array:
    dim = check_samples({"x": x})
    shape = broadcast_shapes({"x[0]": (dim,), "low": tuple(low.shape), "high": tuple(high.shape)})
    if shape != (dim,):
        msg = (
            f"`low` {tuple(low.shape)} and `high` {tuple(high.shape)} must broadcast to "
            f"the latent shape ({dim},) of `x` {tuple(x.shape)}"
        )
        raise ValueError(msg)
    n = x.shape[0]
    check_count("x", n, 2, "for the unbiased estimator")
    scales = fixed_scales(bandwidth, "bandwidth")
    low = xp.broadcast_to(low, (dim,))
    high = xp.broadcast_to(high, (dim,))
    width = _checked_width(low, high, checked=checked, xp=xp)
    estimate = _jitted_estimate() if is_jax_namespace(xp) else _estimate
    return estimate(x, low, high, width, scales=scales, xp=xp)


def _estimate(
    x: Array, low: Array, high: Array, width: Array, *, scales: tuple[float, ...], xp: Namespace
) -> Array:
    """The estimate from checked arguments (``low``, ``high``, ``width`` of shape ``(D,)``)."""
    n = x.shape[0]
    # U-statistic of k(x, x); distances do not change with the centre, and the
    # Gram trick cancels least around the sample's own mean.
    xc = x - xp.mean(x, axis=0)
    sxx = block_sum(xc, xc, kind="rbf", scales=scales, symmetric=True, xp=xp)
    xx_term = (sxx - diagonal_sum(n, scales)) / (n * (n - 1))
    cross_term = xp.zeros((), dtype=x.dtype, device=device(x))
    prior_term = xp.zeros((), dtype=x.dtype, device=device(x))
    for h in scales:
        log_cross = xp.sum(_log_mean_kernel(x, low, high, width, h, xp=xp), axis=1)
        cross_term = cross_term + xp.mean(xp.exp(log_cross))
        prior_term = prior_term + xp.exp(xp.sum(_log_mean_kernel_pair(width / h, xp=xp)))
    return xx_term - 2.0 * cross_term + prior_term


@functools.cache
def _jitted_estimate() -> Callable[..., Array]:  # pragma: no cover - exercised only with jax
    """:func:`_estimate` under ``jax.jit``.

    Eager JAX compiles each of its ~250 small operations for every new shape
    (about a second for the first call); one fused program compiles once per
    shape and number of bandwidths (the bandwidths themselves are traced).
    """
    import jax

    return jax.jit(_estimate, static_argnames=("xp",))
