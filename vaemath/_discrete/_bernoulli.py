r"""Bernoulli KL from logits: :func:`bernoulli_kl` and its ``xp=`` twin :func:`kl_bernoulli`.

With :math:`p = \sigma(a)`, :math:`q = \sigma(b)` and :math:`\theta = b - a`,

.. math::

    \mathrm{KL} = p \log\frac{p}{q} + (1-p)\log\frac{1-p}{1-q}
    = \operatorname{softplus}(b) - \operatorname{softplus}(a) - p\,\theta,

the Bregman divergence of softplus. It is also the centred cumulant generating
function of :math:`X \sim \mathrm{Bernoulli}(p)` at :math:`\theta`,
:math:`\log E\,e^{\theta (X - p)}`, which splits into non-negative parts:

.. math::

    e^{\mathrm{KL}} - 1 = x = (1-p)\,\varphi(-p\theta) + p\,\varphi\bigl((1-p)\theta\bigr),
    \qquad \varphi(z) = e^z - 1 - z \ge 0

(the linear terms :math:`\mp p(1-p)\theta` cancel exactly, on paper). So
:math:`\mathrm{KL} = \log(1 + x)` with no cancellation anywhere; only the
rounding of each piece has to be kept from being amplified. After the exact
symmetry :math:`(a, b) \to (-a, -b)`, which makes :math:`p \le 1/2`:

* :math:`\theta = b - a`, :math:`p = t/(1+t)` and :math:`1 - p = 1/(1+t)`
  (:math:`t = e^a`) are carried as ``hi + lo`` (:mod:`._eft`);
* so are the exponents :math:`-p\theta` and :math:`(1-p)\theta = \theta - p\theta`
  (a rounded :math:`(1-p)\theta` would put an error of :math:`\theta`
  ulps into :math:`e^{(1-p)\theta}`);
* :math:`\varphi` is :func:`._series.phi`: near 0 the polynomial
  :math:`\tfrac{z^2}{2}(1 + z H_1(z))` with the square exact, elsewhere
  ``expm1(z) - z`` or ``e^z + (-1 - z)`` with the difference exact;
* the two products and their sum are exact, and
  :math:`\log(1 + x) = \operatorname{log1p}(x_{hi}) + x_{lo}/(1 + x_{hi})`.

Two regions need other forms:

* exponents beyond ``direct_max`` (*large* :math:`|\theta|`): the Bregman form,
  which no longer cancels there, written as :math:`(\max(b, 0) - p\theta) +
  (\operatorname{softplus}(-|b|) - \operatorname{softplus}(a))` so that an exact
  :math:`b > 0` is not first rounded into :math:`\operatorname{softplus}(b)`;
* :math:`a` below ``tiny_logit`` (*tiny* :math:`p`, within a factor
  :math:`2^{\text{mantissa}}` of the subnormals, where the low halves of the
  double-word products would be subnormal): there :math:`\mathrm{KL} = e^a
  \varphi(\theta)` to working precision, computed as :math:`e^{-K}\,(e^{a + K}
  \varphi(\theta))`.

For a float32 result computed in float64 (:mod:`._working`) the double-word
corrections are skipped (``precise=False``): their effect is below float32's
last digit. The measured errors are in ``docs/discrete.rst``
(``docs/scripts/discrete_accuracy.py``).
"""

from __future__ import annotations

import math

from .._lib._helpers import (
    Array,
    Namespace,
    broadcast_shapes,
    numpy_quiet,
    resolve,
)
from ._eft import dw_div, fast_two_sum, two_prod, two_sum
from ._series import constants, phi
from ._working import in_discrete_precision

__all__ = ["bernoulli_kl", "kl_bernoulli", "softplus"]


def softplus(x: Array, *, xp: Namespace) -> Array:
    """``log(1 + e^x)`` without overflow: ``max(x, 0) + log1p(e^-|x|)``."""
    return xp.clip(x, min=0.0) + xp.log1p(xp.exp(-xp.abs(x)))


@numpy_quiet
def bernoulli_kl(logits: Array, prior_logits: Array | float = 0.0) -> Array:
    r"""Elementwise KL divergence between Bernoulli distributions given by logits.

    .. math::

        \mathrm{KL}\bigl(\mathrm{Bern}(\sigma(a)) \,\|\, \mathrm{Bern}(\sigma(b))\bigr)
        = \sigma(a) \log\frac{\sigma(a)}{\sigma(b)}
        + \sigma(-a) \log\frac{\sigma(-a)}{\sigma(-b)}
        = \operatorname{softplus}(b) - \operatorname{softplus}(a) - \sigma(a)\,(b - a),

    in nats, where :math:`\sigma(a) = 1/(1 + e^{-a})`. The default prior
    :math:`b = 0` is the fair coin: :math:`\log 2 - H(\sigma(a))`.

    Parameters
    ----------
    logits : array
        Logits :math:`a` of the posterior, any shape, e.g. ``(B, D)``.
    prior_logits : array or float, optional
        Logits :math:`b` of the prior (default ``0.0``), broadcastable with
        ``logits``.

    Returns
    -------
    array
        The KL divergence per element, of the broadcast shape, in the floating
        dtype of the inputs (integer arrays are promoted to the library's
        default floating dtype) and on their device.

    Raises
    ------
    TypeError
        If arrays from different libraries are mixed, or an argument is not a
        real floating / integer array or a Python number.
    ValueError
        If the shapes do not broadcast.

    See Also
    --------
    categorical_kl : The same divergence for :math:`K` categories.

    Notes
    -----
    The textbook form, and "sigmoid, then log", lose every digit when
    :math:`b - a` is small (the KL is about :math:`\sigma'(a)(b-a)^2/2` while
    its terms are of size :math:`|b - a|`). Here the KL is evaluated as
    :math:`\log(1 + x)` with :math:`x` a sum of non-negative terms (module
    docstring of ``vaemath._discrete._bernoulli``), with its few critical
    products and sums carried in twice the working precision. The result is
    within 4 ulps of the exact value for all finite logits (tested against
    mpmath; the measured errors are in ``docs/discrete.rst``), including
    logits within :math:`10^{-12}` of the prior's and saturated logits such as
    :math:`\pm 10^4`. Float32 input is computed in float64 and rounded once
    wherever the library has float64 (not on JAX without ``jax_enable_x64``
    or PyTorch on MPS, where a double-word float32 algorithm is used).

    Infinite logits are degenerate Bernoullis: ``a = ±inf`` gives
    :math:`-\log q` or :math:`-\log(1-q)` (0 when the prior is the same
    degenerate distribution), an infinite ``b`` with finite ``a`` gives
    ``inf``. NaN in either argument gives NaN. Gradients flow through both
    arguments under torch autograd and JAX and are finite for finite inputs.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import bernoulli_kl
    >>> float(bernoulli_kl(np.array(0.0), 0.0))
    0.0
    >>> bernoulli_kl(np.array([2.0, -1e4, 1e-8]), np.array([-1.0, 1e4, 0.0]))
    array([8.2872491e-01, 1.0000000e+04, 1.2500000e-17])
    """
    xp, (a, b) = resolve({"logits": logits, "prior_logits": prior_logits})
    broadcast_shapes({"logits": tuple(a.shape), "prior_logits": tuple(b.shape)})
    return kl_bernoulli(a, b, xp=xp)


def kl_bernoulli(logits: Array, prior_logits: Array, *, xp: Namespace) -> Array:
    """``KL(Bern(sigmoid(logits)) || Bern(sigmoid(prior_logits)))`` elementwise."""
    return in_discrete_precision(_kl_bernoulli_work, logits, prior_logits, xp=xp)


def _kl_bernoulli_work(a: Array, b: Array, *, xp: Namespace, precise: bool) -> Array:
    c = constants(a.dtype, xp=xp)
    f = c.factor
    # Symmetry: KL(a, b) = KL(-a, -b). Work with a <= 0, where p = sigmoid(a) <= 1/2.
    flip = a > 0
    a = xp.where(flip, -a, a)
    b = xp.where(flip, -b, b)
    if precise:
        theta, theta_lo = two_sum(b, -a)
        # Below tiny_logit, e^a is subnormal: t = e^(a + K) there (a + K is
        # exact) and the ordinary branches see p = 0.
        tiny = a < c.tiny_logit
        t = xp.exp(xp.where(tiny, a + c.shift, a))
        t_ord = xp.where(tiny, xp.zeros_like(t), t)
        s, s_lo = fast_two_sum(1.0, t_ord)
        p, p_lo = dw_div(t_ord, s, s_lo, factor=f)
        pc, pc_lo = dw_div(1.0, s, s_lo, factor=f)
        p_theta, p_theta_lo = two_prod(p, theta, factor=f)
        p_theta_lo = p_theta_lo + p_lo * theta + p * theta_lo
        # (1 - p) theta = theta - p theta, as hi + lo.
        z, z_lo = two_sum(theta, -p_theta)
        z_lo = z_lo - p_theta_lo + theta_lo
    else:
        theta, theta_lo = b - a, 0.0
        t = t_ord = xp.exp(a)
        pc = 1.0 / (1.0 + t)
        p = t * pc
        p_theta, p_theta_lo = p * theta, 0.0
        z, z_lo = pc * theta, 0.0
    # x = e^KL - 1 = p phi((1 - p) theta) + (1 - p) phi(-p theta), both terms >= 0.
    overflow = (z > c.direct_max) | (-p_theta > c.direct_max)
    f1, f1_lo = phi(xp.clip(z, max=c.direct_max), z_lo, c, xp=xp, precise=precise)
    f2, f2_lo = phi(xp.clip(-p_theta, max=c.direct_max), -p_theta_lo, c, xp=xp, precise=precise)
    if precise:
        u1, u1_lo = two_prod(p, f1, factor=f)
        u2, u2_lo = two_prod(pc, f2, factor=f)
        x, x_lo = two_sum(u1, u2)
        x_lo = x_lo + (u1_lo + p * f1_lo + p_lo * f1) + (u2_lo + pc * f2_lo + pc_lo * f2)
        x = xp.clip(x, min=0.0)
        inner = xp.log1p(x) + x_lo / (1.0 + x)
    else:
        inner = xp.log1p(p * f1 + pc * f2)

    # Bregman form, for exponents too large for phi (and tiny p with large
    # theta): softplus(b) - softplus(a) - p theta, written as
    # (max(b, 0) - p theta) + (log1p(e^-|b|) - log1p(e^a)), so that for b > 0
    # the exact b is not rounded into softplus(b) first.
    if precise:
        softplus_a = xp.where(tiny, t * c.shift_hi, xp.log1p(t_ord))
        p_theta_big = xp.where(tiny, (t * c.shift_hi) * theta, p_theta)
        p_theta_big_lo = xp.where(tiny, xp.zeros_like(p_theta_lo), p_theta_lo)
    else:
        softplus_a = xp.log1p(t)
        p_theta_big, p_theta_big_lo = p_theta, 0.0
    linear = (xp.clip(b, min=0.0) - p_theta_big) - p_theta_big_lo
    large = linear + (xp.log1p(xp.exp(-xp.abs(b))) - softplus_a)
    out = xp.where(overflow, large, inner)
    if precise:
        # Tiny p: KL = e^a phi(theta) (the O(p^2) terms are below the last
        # digit); with p = 0 in the ordinary branches, f1 is phi(theta).
        y = t * f1 + t * f1_lo
        tiny_kl = y * c.shift_hi + y * c.shift_lo
        out = xp.where(tiny, xp.where(theta > c.direct_max, large, tiny_kl), out)
    # Degenerate distributions: p = 0 gives -log(1 - q) = softplus(b); a finite
    # posterior against a degenerate prior is infinitely far.
    out = xp.where(xp.isinf(b) & xp.isfinite(a), xp.full_like(out, math.inf), out)
    return xp.where(a == -math.inf, softplus(b, xp=xp), out)
