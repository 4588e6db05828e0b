"""Full-covariance Gaussians given by Cholesky factors: :func:`mvn_kl`."""

from __future__ import annotations

import functools

from .._lib._compat import device, is_jax_namespace, is_numpy_namespace, is_torch_namespace
from .._lib._helpers import (
    Array,
    Namespace,
    broadcast_shapes,
    in_working_dtype,
    numpy_quiet,
    resolve,
)
from ._expm1mx import SWITCH, poly_half_expm1mx

__all__ = ["forward_substitution", "mvn_kl", "solve_tril"]


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
    return in_working_dtype(
        functools.partial(_kl_tril_tril, dim=dim), mu, scale_tril, prior_mu, prior_scale_tril, xp=xp
    )


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
        m_off = solve_tril(prior_lower, lower - prior_lower, xp=xp)
        white = solve_tril(prior_lower, diff[..., None], xp=xp)[..., 0]
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
    h = xp.where(xp.abs(d) < SWITCH, poly_half_expm1mx(d, xp=xp), direct)
    diag_terms = xp.sum(h, axis=-1)
    eye = xp.eye(dim, dtype=m_off.dtype, device=device(m_off))
    off = m_off * (1.0 - eye)
    off_terms = 0.5 * xp.sum(xp.sum(off * off, axis=-1), axis=-1)
    maha = 0.5 * xp.sum(white * white, axis=-1)
    return diag_terms + off_terms + maha


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


def solve_tril(lower: Array, rhs: Array, *, xp: Namespace) -> Array:
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
    return forward_substitution(lower, rhs, xp=xp)


def forward_substitution(lower: Array, rhs: Array, *, xp: Namespace) -> Array:
    rows: list[Array] = []
    n = lower.shape[-1]
    for i in range(n):
        acc = rhs[..., i, :]
        for j, row in enumerate(rows):
            acc = acc - lower[..., i, j : j + 1] * row
        rows.append(acc / lower[..., i, i : i + 1])
    return xp.stack(rows, axis=-2)
