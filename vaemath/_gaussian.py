"""Closed-form Gaussian KL divergences and log-densities, on any Array-API library.

Accuracy notes (measured in ulps against mpmath by ``docs/scripts/accuracy.py``):

* The variance part of the diagonal KL is ``(e^d - 1 - d) / 2`` with
  ``d = logvar - prior_logvar``. Written as ``exp(d) - 1 - d`` (the usual VAE
  code) or ``r - 1 - log(r)`` (torch.distributions), it loses every digit as
  ``d -> 0``, exactly where inactive latents sit. vaemath evaluates it as a
  Taylor polynomial for ``|d| < T`` and as ``expm1(d) - d`` beyond, with ``T``
  chosen per dtype so both branches stay within about 3 ulps.
* ``d`` itself is formed with an error-free transformation (TwoSum), so a
  rounded subtraction ``logvar - prior_logvar`` costs no accuracy even when
  ``e^d`` is large (the error would otherwise grow like ``|d|`` ulps).
"""

from __future__ import annotations

import math
from typing import Any

from ._gaussian_fast import SWITCH, fast_kernel, poly_coefficients
from ._lib._compat import device, is_jax_namespace, is_numpy_namespace, is_torch_namespace
from ._lib._helpers import (
    Array,
    Namespace,
    broadcast_shapes,
    numpy_quiet,
    resolve,
    working_dtype,
)

__all__ = ["gaussian_kl", "gaussian_log_density", "mvn_kl"]


# -- the variance term h(d) = (e^d - 1 - d) / 2 --------------------------------


# h(d) = d^2 g(d) is evaluated as a polynomial in d for |d| < SWITCH and as
# (expm1(d) - d) / 2 beyond: below SWITCH the expm1 form cancels (its error
# grows like 1/|d| ulps), above it the polynomial would need more terms. The
# coefficients (float64: Taylor, float32: minimax) live with the fast kernels.
# log(2*pi) split as hi + lo (hi exactly representable in the working dtype),
# computed with mpmath at 200 bits.
_LOG_2PI_HI64 = 1.8378770664093456
_LOG_2PI_LO64 = -7.756588316134483e-17
_LOG_2PI_HI32 = 1.8378770351409912
_LOG_2PI_LO32 = 3.126835427262316e-08


def _is_wide(dtype: Any, xp: Namespace) -> bool:
    return bool(dtype == xp.float64)


def _poly_half_expm1mx(d: Array, *, xp: Namespace) -> Array:
    """``(e^d - 1 - d) / 2`` as ``d^2 g(d)``, valid for ``|d| < SWITCH``."""
    coef = poly_coefficients(_is_wide(d.dtype, xp))
    p = coef[-1] * d + coef[-2]
    for c in coef[-3::-1]:
        p = p * d + c
    return (d * d) * p


def _half_expm1mx(d: Array, *, xp: Namespace) -> tuple[Array, Array, Array]:
    """``(e^d - 1 - d) / 2`` to ~3 ulps, without intermediate overflow.

    Returns ``(h, e, scale)`` such that the value is ``h * scale``, with
    ``e = expm1(min(d, d_max))`` (for first-order corrections) and
    ``scale = exp(max(d, d_max) - d_max)``, which is 1 except where ``e^d``
    itself would overflow although ``e^d / 2`` does not.
    """
    poly = _poly_half_expm1mx(d, xp=xp)
    d_max = math.log(float(xp.finfo(d.dtype).max)) - 1.0
    dc = xp.clip(d, max=d_max)
    e = xp.expm1(dc)
    direct = 0.5 * (e - dc)
    scale = xp.exp(xp.clip(d, min=d_max) - d_max)
    return xp.where(xp.abs(d) < SWITCH, poly, direct), e, scale


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


# -- public functions ------------------------------------------------------------


@numpy_quiet
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
    standard = _is_zero(prior_mu) and _is_zero(prior_logvar)
    if standard:
        xp, (mu, logvar) = resolve({"mu": mu, "logvar": logvar})
        _check_broadcast({"mu": mu, "logvar": logvar})
        fast = fast_kernel(xp)
        if fast is not None:
            out = fast(mu, logvar)
            if out is not None:
                return out
        dtype = mu.dtype
        work = working_dtype(xp, dtype)
        if work != dtype:
            mu, logvar = xp.astype(mu, work), xp.astype(logvar, work)
        half_var_term, _, scale = _half_expm1mx(logvar, xp=xp)
        out = half_var_term * scale + mu * (0.5 * mu)
        return out if work == dtype else xp.astype(out, dtype)
    xp, (mu, logvar, prior_mu, prior_logvar) = resolve(
        {
            "mu": mu,
            "logvar": logvar,
            "prior_mu": prior_mu,
            "prior_logvar": prior_logvar,
        }
    )
    _check_broadcast(
        {"mu": mu, "logvar": logvar, "prior_mu": prior_mu, "prior_logvar": prior_logvar}
    )
    dtype = mu.dtype
    work = working_dtype(xp, dtype)
    if work != dtype:
        mu, logvar, prior_mu, prior_logvar = (
            xp.astype(a, work) for a in (mu, logvar, prior_mu, prior_logvar)
        )
    out = _kl_diag_diag(mu, logvar, prior_mu, prior_logvar, xp=xp)
    return out if work == dtype else xp.astype(out, dtype)


def _kl_diag_diag(
    mu: Array, logvar: Array, prior_mu: Array, prior_logvar: Array, *, xp: Namespace
) -> Array:
    d, d_err = _two_diff(logvar, prior_logvar, xp=xp)
    h, e, scale = _half_expm1mx(d, xp=xp)
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
    dtype = z.dtype
    work = working_dtype(xp, dtype)
    if work != dtype:
        z, mu, logvar = (xp.astype(a, work) for a in (z, mu, logvar))
    hi, lo = (
        (_LOG_2PI_HI64, _LOG_2PI_LO64)
        if _is_wide(logvar.dtype, xp)
        else (_LOG_2PI_HI32, _LOG_2PI_LO32)
    )
    # (z - mu) e^(-v/2), scaled before squaring (no 0 * inf, no underflow
    # of (z - mu)^2) and halved before subtracting (z - mu may overflow
    # where the scaled value does not); both halvings are exact.
    scaled = _scale(0.5 * z - 0.5 * mu, 2.0 * xp.exp(-0.5 * logvar), xp=xp)
    out = -(0.5 * ((logvar + hi) + lo) + scaled * (0.5 * scaled))
    return out if work == dtype else xp.astype(out, dtype)


@numpy_quiet
def mvn_kl(
    mu: Array,
    scale_tril: Array,
    prior_mu: Array | None = None,
    prior_scale_tril: Array | None = None,
) -> Array:
    r"""KL divergence between full-covariance Gaussians given by Cholesky factors.

    With :math:`\Sigma = L L^\top`, :math:`\Sigma_p = L_p L_p^\top` and
    :math:`M = L_p^{-1} L` (lower triangular, :math:`M_{ii} = L_{ii}/L_{p,ii}`),

    .. math::

        \mathrm{KL}\bigl(\mathcal N(\mu, \Sigma) \,\|\, \mathcal N(\mu_p, \Sigma_p)\bigr)
        = \tfrac12\Bigl[\|L_p^{-1}(\mu - \mu_p)\|^2
          + \sum_{i \ne j} M_{ij}^2
          + \sum_i \bigl(e^{d_i} - 1 - d_i\bigr)\Bigr],
        \quad d_i = 2 \log |M_{ii}|,

    which is :math:`\tfrac12[\operatorname{tr}(\Sigma_p^{-1}\Sigma) + \text{Mahalanobis}
    - D + \log\det\Sigma_p - \log\det\Sigma]` regrouped so that nothing cancels:
    the off-diagonal :math:`M_{ij}` are solved from :math:`L - L_p` (exact for
    nearby factors), the diagonal terms use a polynomial where
    :math:`e^{d} - 1 - d` cancels and :math:`r_i^2 - 1 - d_i` with
    :math:`r_i = |M_{ii}|` elsewhere, and :math:`d_i` is formed with ``log1p``
    near :math:`r_i = 1`.

    Parameters
    ----------
    mu : array, shape ``(..., D)``
        Mean of the first Gaussian.
    scale_tril : array, shape ``(..., D, D)``
        Lower Cholesky factor :math:`L` of its covariance (the strict upper
        triangle is ignored; the diagonal must be non-zero).
    prior_mu : array, shape ``(..., D)``, optional
        Mean of the second Gaussian; ``None`` (default) means zero.
    prior_scale_tril : array, shape ``(..., D, D)``, optional
        Lower Cholesky factor of the second covariance; ``None`` (default)
        means the identity.

    Returns
    -------
    array
        The KL divergence, of the broadcast batch shape ``(...)``.

    Raises
    ------
    ValueError
        If the trailing dimensions disagree or the batch shapes do not
        broadcast.
    TypeError
        Mixed array libraries or non-floating arguments.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import mvn_kl
    >>> L = np.array([[1.0, 0.0], [0.5, 2.0]])
    >>> round(float(mvn_kl(np.zeros(2), L)), 6)
    0.931853
    """
    xp, (mu, scale_tril, prior_mu, prior_scale_tril) = resolve(
        {
            "mu": mu,
            "scale_tril": scale_tril,
            "prior_mu": prior_mu,
            "prior_scale_tril": prior_scale_tril,
        }
    )
    dim = _check_mvn_shapes(mu, scale_tril, prior_mu, prior_scale_tril)
    dtype = mu.dtype
    work = working_dtype(xp, dtype)
    if work != dtype:
        mu, scale_tril, prior_mu, prior_scale_tril = (
            None if a is None else xp.astype(a, work)
            for a in (mu, scale_tril, prior_mu, prior_scale_tril)
        )
    out = _kl_tril_tril(mu, scale_tril, prior_mu, prior_scale_tril, dim=dim, xp=xp)
    return out if work == dtype else xp.astype(out, dtype)


def _kl_tril_tril(
    mu: Array,
    scale_tril: Array,
    prior_mu: Array | None,
    prior_scale_tril: Array | None,
    *,
    dim: int,
    xp: Namespace,
) -> Array:
    lower = xp.tril(scale_tril)
    diff = mu if prior_mu is None else mu - prior_mu
    diag = xp.abs(xp.linalg.diagonal(lower))
    if prior_scale_tril is None:
        # M = L: its off-diagonal entries are the inputs themselves.
        m_off = lower
        white = diff
        ratio = diag
        ratio_minus_1 = diag - 1.0
    else:
        prior_lower = xp.tril(prior_scale_tril)
        prior_diag = xp.abs(xp.linalg.diagonal(prior_lower))
        # Off-diagonal of M = Lp^-1 L equals that of Lp^-1 (L - Lp); L - Lp is
        # exact for nearby factors, so small entries keep their digits.
        m_off = _solve_tril(prior_lower, lower - prior_lower, xp=xp)
        white = _solve_tril(prior_lower, diff[..., None], xp=xp)[..., 0]
        ratio = diag / prior_diag
        ratio_minus_1 = (diag - prior_diag) / prior_diag
    # d_i = 2 log(r_i): log1p where r is near 1, log elsewhere (log1p(r - 1)
    # would lose the digits of r - 1 for r far from 1).
    near = xp.abs(ratio_minus_1) < 0.5
    safe_rm1 = xp.where(near, ratio_minus_1, xp.zeros_like(ratio_minus_1))
    safe_r = xp.where(near, xp.ones_like(ratio), ratio)
    d = 2.0 * xp.where(near, xp.log1p(safe_rm1), xp.log(safe_r))
    # (r^2 - 1 - d) / 2: a polynomial in d where it cancels, and with
    # e^d = r^2 formed directly (not as expm1(2 log r)) elsewhere.
    direct = ratio * (0.5 * ratio) - 0.5 - 0.5 * d
    h = xp.where(xp.abs(d) < SWITCH, _poly_half_expm1mx(d, xp=xp), direct)
    diag_terms = xp.sum(h, axis=-1)
    eye = xp.eye(dim, dtype=m_off.dtype, device=_device(m_off))
    off = m_off * (1.0 - eye)
    off_terms = 0.5 * xp.sum(xp.sum(off * off, axis=-1), axis=-1)
    maha = 0.5 * xp.sum(white * white, axis=-1)
    return diag_terms + off_terms + maha


# -- helpers ----------------------------------------------------------------------


def _is_zero(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == 0


def _device(x: Array) -> Any:
    return device(x)


def _check_broadcast(arrays: dict[str, Array]) -> None:
    broadcast_shapes({k: tuple(v.shape) for k, v in arrays.items()})


def _check_mvn_shapes(
    mu: Array, scale_tril: Array, prior_mu: Array | None, prior_scale_tril: Array | None
) -> int:
    if mu.ndim < 1:
        msg = f"`mu` must have shape (..., D), got {tuple(mu.shape)}"
        raise ValueError(msg)
    dim = mu.shape[-1]
    shapes = {"mu": tuple(mu.shape[:-1])}
    for name, m in (("scale_tril", scale_tril), ("prior_scale_tril", prior_scale_tril)):
        if m is None:
            continue
        if m.ndim < 2 or m.shape[-1] != dim or m.shape[-2] != dim:
            msg = (
                f"`{name}` must have shape (..., D, D) with D = {dim} from `mu`, "
                f"got {tuple(m.shape)}"
            )
            raise ValueError(msg)
        shapes[name] = tuple(m.shape[:-2])
    if prior_mu is not None:
        if prior_mu.ndim < 1 or prior_mu.shape[-1] != dim:
            msg = (
                f"`prior_mu` must have shape (..., D) with D = {dim} from `mu`, "
                f"got {tuple(prior_mu.shape)}"
            )
            raise ValueError(msg)
        shapes["prior_mu"] = tuple(prior_mu.shape[:-1])
    broadcast_shapes(shapes)
    return int(dim)


def _solve_tril(lower: Array, rhs: Array, *, xp: Namespace) -> Array:
    """Solve ``lower @ x = rhs`` for lower-triangular ``lower``, batched.

    Uses the library's native triangular solver where one exists (torch,
    JAX, SciPy for NumPy); otherwise a vectorised forward substitution made of
    standard Array-API calls only.
    """
    batch = broadcast_shapes(
        {"prior_scale_tril": tuple(lower.shape[:-2]), "rhs": tuple(rhs.shape[:-2])}
    )
    lower = xp.broadcast_to(lower, (*batch, *lower.shape[-2:]))
    rhs = xp.broadcast_to(rhs, (*batch, *rhs.shape[-2:]))
    if is_torch_namespace(xp):
        import torch

        return torch.linalg.solve_triangular(lower, rhs, upper=False)
    if is_jax_namespace(xp):
        import jax.scipy.linalg as jsl

        return jsl.solve_triangular(lower, rhs, lower=True)
    if is_numpy_namespace(xp):
        try:
            from scipy.linalg import solve_triangular
        except ImportError:  # pragma: no cover - scipy is optional
            pass
        else:
            return xp.asarray(solve_triangular(lower, rhs, lower=True))
    return _forward_substitution(lower, rhs, xp=xp)


def _forward_substitution(lower: Array, rhs: Array, *, xp: Namespace) -> Array:
    rows: list[Array] = []
    n = lower.shape[-1]
    for i in range(n):
        acc = rhs[..., i, :]
        for j, row in enumerate(rows):
            acc = acc - lower[..., i, j : j + 1] * row
        rows.append(acc / lower[..., i, i : i + 1])
    return xp.stack(rows, axis=-2)
