r"""Diagonal Gaussians: :func:`gaussian_kl` and :func:`gaussian_log_density`.

Each public function resolves the namespace once and calls its private ``xp=``
twin (:func:`kl_diag`, :func:`kl_standard`, :func:`log_density`), which other
subpackages call directly. The twins take arrays of one floating dtype and do
the working-dtype round trip themselves (``vaemath._lib._helpers.in_working_dtype``).

Accuracy notes (measured in ulps against mpmath by ``docs/scripts/accuracy.py``):

* the variance part is :math:`h(d)` of :mod:`._expm1mx` with ``d = logvar -
  prior_logvar``;
* ``d`` itself is formed with an error-free transformation (TwoSum), so a
  rounded subtraction ``logvar - prior_logvar`` costs no accuracy even when
  ``e^d`` is large (the error would otherwise grow like ``|d|`` ulps);
* :math:`\log 2\pi` is carried as hi + lo in the working dtype, here only.
"""

from __future__ import annotations

import math

from .._lib._helpers import (
    Array,
    Namespace,
    broadcast_shapes,
    in_working_dtype,
    numpy_quiet,
    resolve,
)
from ._eager import eager_kl_standard, fast_kl_standard
from ._expm1mx import half_expm1mx

__all__ = [
    "gaussian_kl",
    "gaussian_log_density",
    "kl_diag",
    "kl_standard",
    "log_density",
    "neg_half_log_normaliser",
]

# log(2*pi) split as hi + lo (hi exactly representable in the working dtype),
# computed with mpmath at 200 bits.
_LOG_2PI_HI64 = 1.8378770664093456
_LOG_2PI_LO64 = -7.756588316134483e-17
_LOG_2PI_HI32 = 1.8378770351409912
_LOG_2PI_LO32 = 3.126835427262316e-08


def _scale(x: Array, factor: Array, *, xp: Namespace) -> Array:
    """``x * factor`` with ``0 * inf = 0``: an exactly zero deviation stays zero
    however small the variance (``exp(-logvar / 2)`` overflows below
    ``logvar ~ -177`` in float32)."""
    return xp.where(x == 0, xp.zeros_like(x), x * factor)


def _two_diff(a: Array, b: Array, *, xp: Namespace) -> tuple[Array, Array]:
    """``a - b = s + err`` exactly (Knuth's TwoSum), for finite inputs."""
    s = a - b
    bb = s - a
    err = (a - (s - bb)) - (b + bb)
    # Where s overflows (or an input is inf/nan) err is nan; the correction
    # is meaningless there, and s alone carries the right inf/nan.
    return s, xp.where(xp.isfinite(err), err, xp.zeros_like(err))


def _check_broadcast(arrays: dict[str, Array]) -> None:
    broadcast_shapes({k: tuple(v.shape) for k, v in arrays.items()})


def _is_zero(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0


# -- public functions ------------------------------------------------------------


def gaussian_kl(
    mu: Array,
    logvar: Array,
    prior_mu: Array | float = 0.0,
    prior_logvar: Array | float = 0.0,
) -> Array:
    r"""Elementwise KL divergence between diagonal Gaussians in log-variance form.

    .. math::

        \mathrm{KL}\bigl(\mathcal N(\mu, e^{v}) \,\|\, \mathcal N(m, e^{w})\bigr)
        = \tfrac12\Bigl[(\mu - m)^2 e^{-w} + e^{d} - 1 - d\Bigr],
        \qquad d = v - w.

    With the default prior :math:`\mathcal N(0, 1)` this is the familiar
    :math:`\tfrac12(\mu^2 + e^{v} - 1 - v)`.

    Parameters
    ----------
    mu, logvar : array
        Mean and log-variance of the posterior, e.g. of shape ``(B, D)``.
    prior_mu, prior_logvar : array or float, optional
        Mean and log-variance of the prior (default ``0.0``: standard normal).
        Scalars or arrays; all four arguments broadcast together.

    Returns
    -------
    array
        The KL divergence per element, of the broadcast shape, in the floating
        dtype of the inputs (integer arrays are promoted to the library's
        default floating dtype), on the inputs' device. Sum over the latent
        axis for the per-sample KL of a diagonal Gaussian.

    Raises
    ------
    TypeError
        If arrays from different libraries are mixed, or an argument is not a
        real floating / integer array or a Python number.
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    Accuracy: at most ~4 ulps from the exact value for all finite inputs whose
    KL is finite, including :math:`d \to 0` where :math:`e^{d} - 1 - d` cancels
    catastrophically in the textbook form (there it is evaluated as a Taylor
    polynomial), and where :math:`v - w` is not exactly representable (a
    compensated difference is used). NaN in any input gives NaN. ``logvar =
    -inf`` or ``+inf`` gives ``+inf``.

    Gradients flow through every argument under torch autograd and JAX.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import gaussian_kl
    >>> mu = np.array([0.0, 1.0, 0.0])
    >>> logvar = np.array([0.0, 0.0, 1e-9])
    >>> gaussian_kl(mu, logvar)
    array([0.0e+00, 5.0e-01, 2.5e-19])

    Against the prior :math:`\mathcal N(0.5, 0.1^2)`:

    >>> float(gaussian_kl(np.array(0.5), np.log(0.01), 0.5, np.log(0.01)))
    0.0
    """
    if _is_zero(prior_mu) and _is_zero(prior_logvar):
        out = fast_kl_standard(mu, logvar)
        if out is not None:
            return out
    return _gaussian_kl(mu, logvar, prior_mu, prior_logvar)


@numpy_quiet
def _gaussian_kl(
    mu: Array, logvar: Array, prior_mu: Array | float, prior_logvar: Array | float
) -> Array:
    """:func:`gaussian_kl` after its fast path: resolve, check, compute."""
    if _is_zero(prior_mu) and _is_zero(prior_logvar):
        xp, (mu, logvar) = resolve({"mu": mu, "logvar": logvar})
        _check_broadcast({"mu": mu, "logvar": logvar})
        return kl_standard(mu, logvar, xp=xp)
    args = {"mu": mu, "logvar": logvar, "prior_mu": prior_mu, "prior_logvar": prior_logvar}
    xp, arrays = resolve(args)
    _check_broadcast(dict(zip(args, arrays, strict=True)))
    return kl_diag(*arrays, xp=xp)


@numpy_quiet
def gaussian_log_density(z: Array, mu: Array, logvar: Array) -> Array:
    r"""Elementwise log-density of a Gaussian in log-variance form.

    .. math::

        \log \mathcal N(z; \mu, e^{v})
        = -\tfrac12\Bigl[\log 2\pi + v + (z - \mu)^2 e^{-v}\Bigr].

    Parameters
    ----------
    z : array
        Points at which to evaluate the density, e.g. ``(B, D)``.
    mu, logvar : array
        Mean and log-variance; all three arguments broadcast together.

    Returns
    -------
    array
        ``log N(z; mu, exp(logvar))`` per element, of the broadcast shape and
        floating dtype of the inputs. Sum over the latent axis for the
        log-density of a diagonal Gaussian.

    Raises
    ------
    TypeError
        Mixed array libraries or a non-numeric argument.
    ValueError
        If the shapes do not broadcast.

    Notes
    -----
    :math:`\log 2\pi` is carried in two parts (hi + lo) in the working dtype,
    so the sum :math:`\log 2\pi + v` is correctly rounded even where it
    cancels. The remaining error is that of :math:`(z-\mu)^2 e^{-v}` (about
    2 ulps of that term); the result can only lose digits where that term
    nearly cancels against :math:`\log 2\pi + v`, a cancellation inherent in
    the sum.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import gaussian_log_density
    >>> round(float(gaussian_log_density(np.array(0.0), 0.0, 0.0)), 6)
    -0.918939
    """
    xp, (z, mu, logvar) = resolve({"z": z, "mu": mu, "logvar": logvar})
    _check_broadcast({"z": z, "mu": mu, "logvar": logvar})
    return log_density(z, mu, logvar, xp=xp)


# -- the xp= twins ------------------------------------------------------------------


def kl_standard(mu: Array, logvar: Array, *, xp: Namespace) -> Array:
    """``KL(N(mu, e^logvar) || N(0, 1))`` elementwise (native eager kernel if any)."""
    out = eager_kl_standard(mu, logvar, xp=xp)
    if out is not None:
        return out
    return in_working_dtype(_kl_standard_work, mu, logvar, xp=xp)


def _kl_standard_work(mu: Array, logvar: Array, *, xp: Namespace) -> Array:
    half_var_term, _, scale = half_expm1mx(logvar, xp=xp)
    return half_var_term * scale + mu * (0.5 * mu)


def kl_diag(
    mu: Array, logvar: Array, prior_mu: Array, prior_logvar: Array, *, xp: Namespace
) -> Array:
    """``KL(N(mu, e^logvar) || N(prior_mu, e^prior_logvar))`` elementwise."""
    return in_working_dtype(_kl_diag_diag, mu, logvar, prior_mu, prior_logvar, xp=xp)


def _kl_diag_diag(
    mu: Array, logvar: Array, prior_mu: Array, prior_logvar: Array, *, xp: Namespace
) -> Array:
    d, d_err = _two_diff(logvar, prior_logvar, xp=xp)
    h, e, scale = half_expm1mx(d, xp=xp)
    # h(d + d_err) ~= h(d) + h'(d) d_err with h'(d) = expm1(d) / 2. Wherever
    # the KL is finite, |d_err| <= ulp(d) / 2 < 1e-4; the clip only keeps the
    # linearisation from flipping the sign where d is so large that e^d
    # overflows anyway.
    d_err = xp.clip(d_err, min=-1e-4, max=1e-4)
    var_term = (h + 0.5 * (e * d_err)) * scale
    # (mu - prior_mu)^2 e^(-w) from the exact difference hi + lo, scaled
    # before squaring so that neither 0 * inf nor an underflow of (hi)^2 can
    # occur: t = hi e^(-w/2), term = t^2 + 2 t (lo e^(-w/2)).
    diff, diff_err = _two_diff(mu, prior_mu, xp=xp)
    # Ordinary range: (hi^2 / 2 + hi lo) e^(-w), one exp, about 2.5 ulps.
    half_sq = diff * (0.5 * diff) + diff * diff_err
    plain = half_sq * xp.exp(-prior_logvar)
    # Extremes (e^(-w) or hi^2 over/underflowing): scale before squaring.
    inv_sd = xp.exp(-0.5 * prior_logvar)
    t = _scale(diff, inv_sd, xp=xp)
    half_tt = t * (0.5 * t)  # halved before the product: no spurious overflow
    corrected = half_tt + t * _scale(diff_err, inv_sd, xp=xp)
    scaled = xp.where(xp.isinf(half_tt), half_tt, corrected)
    finfo = xp.finfo(diff.dtype)
    ordinary = (
        (xp.abs(prior_logvar) < 0.25 * math.log(float(finfo.max)))
        & (xp.abs(diff) < 0.25 * math.sqrt(float(finfo.max)))
        & ((xp.abs(diff) > 4.0 * math.sqrt(float(finfo.smallest_normal))) | (diff == 0))
    )
    mean_term = xp.where(ordinary, plain, scaled)
    return var_term + mean_term


def neg_half_log_normaliser(logvar: Array, *, xp: Namespace) -> Array:
    """``-(logvar + log 2 pi) / 2`` with log 2 pi as hi + lo (correctly rounded sum)."""
    hi, lo = (
        (_LOG_2PI_HI64, _LOG_2PI_LO64)
        if logvar.dtype == xp.float64
        else (_LOG_2PI_HI32, _LOG_2PI_LO32)
    )
    return -0.5 * ((logvar + hi) + lo)


def log_density(z: Array, mu: Array, logvar: Array, *, xp: Namespace) -> Array:
    """``log N(z; mu, e^logvar)`` elementwise, in the working dtype of the inputs."""
    return in_working_dtype(_log_density_work, z, mu, logvar, xp=xp)


def _log_density_work(z: Array, mu: Array, logvar: Array, *, xp: Namespace) -> Array:
    # (z - mu) e^(-v/2), scaled before squaring (no 0 * inf, no underflow of
    # (z - mu)^2). The difference is taken whole where it is finite (halving a
    # subnormal difference would round it to 0) and from the halves where it
    # overflows but the scaled value need not. Where e^(-v/2) itself overflows
    # (v below -2 log(max)) the factor is applied as two halves of the exponent,
    # so a tiny deviation times a huge precision is not inf.
    diff = z - mu
    overflow = xp.isinf(diff) & xp.isfinite(z) & xp.isfinite(mu)
    base = xp.where(overflow, 0.5 * z - 0.5 * mu, diff)
    twice = xp.where(overflow, xp.full_like(diff, 2.0), xp.ones_like(diff))
    limit = math.log(float(xp.finfo(diff.dtype).max))
    huge = -0.5 * logvar > limit
    safe_lv = xp.where(huge, xp.zeros_like(logvar), logvar)
    whole = _scale(base, twice * xp.exp(-0.5 * safe_lv), xp=xp)
    quarter = xp.exp(-0.25 * xp.where(huge, logvar, xp.zeros_like(logvar)))
    split = _scale(_scale(base, quarter, xp=xp), twice * quarter, xp=xp)
    scaled = xp.where(huge, split, whole)
    return neg_half_log_normaliser(logvar, xp=xp) - scaled * (0.5 * scaled)
