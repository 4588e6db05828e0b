"""Diagonal Gaussian mixtures (a mixture prior, a VampPrior) on the estimators' tile engine."""

from __future__ import annotations

import math

from .._lib._compat import is_torch_namespace
from .._lib._helpers import Array, Namespace, numpy_quiet, resolve
from . import _tiles
from ._weights import LogWeights

__all__ = ["gaussian_mixture_log_density", "mixture_log_densities", "normalised_log_weights"]


def normalised_log_weights(log_weights: Array, *, xp: Namespace) -> Array:
    """``log w - logsumexp(log w)`` (max-shifted); NaN if every weight is zero."""
    top = xp.max(log_weights)
    shift = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    return log_weights - (xp.log(xp.sum(xp.exp(log_weights - shift))) + shift)


def mixture_log_densities(
    z: Array,
    mu: Array,
    logvar: Array,
    log_weights: Array | None,
    *,
    xp: Namespace,
    marginals: bool,
) -> tuple[Array, Array | None]:
    r"""``log p(z_i)`` ``(B,)`` and, with ``marginals``, ``log p(z_id)`` ``(B, D)``.

    ``p = sum_k w_k N(mu_k, diag e^{v_k})`` with normalised ``log_weights``
    (``None``: uniform), through the tiled engine (differentiable on torch with
    the bounded-memory backward; autograd elsewhere).
    """
    k = mu.shape[0]
    weights = LogWeights(-math.log(k)) if log_weights is None else LogWeights(0.0)
    if is_torch_namespace(xp):
        from ._torch import log_aggregate_torch

        return log_aggregate_torch(
            z, mu, logvar, weights, column_log_weights=log_weights, with_marginals=marginals
        )
    lp, lpd, _ = _tiles.forward(
        z, mu, logvar, weights, xp=xp, with_marginals=marginals, column_log_weights=log_weights
    )
    return lp, lpd


def _check(z: Array, mu: Array, logvar: Array, log_weights: Array | None) -> None:
    if z.ndim != 2:
        msg = f"`z` must have shape (B, D), got {tuple(z.shape)}"
        raise ValueError(msg)
    if mu.ndim != 2 or tuple(mu.shape) != tuple(logvar.shape):
        msg = (
            "`mu` and `logvar` must have one shape (K, D), got "
            f"{tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
        raise ValueError(msg)
    if mu.shape[1] != z.shape[1] or mu.shape[0] < 1:
        msg = (
            f"the components `mu` {tuple(mu.shape)} must be (K, D) with K >= 1 and the "
            f"D of `z` {tuple(z.shape)}"
        )
        raise ValueError(msg)
    if log_weights is not None and tuple(log_weights.shape) != (mu.shape[0],):
        msg = (
            f"`log_weights` must have shape (K,) = ({mu.shape[0]},), got {tuple(log_weights.shape)}"
        )
        raise ValueError(msg)


@numpy_quiet
def gaussian_mixture_log_density(
    z: Array, mu: Array, logvar: Array, log_weights: Array | None = None
) -> Array:
    r"""Log-density of a mixture of diagonal Gaussians at each row of ``z``.

    Parameters
    ----------
    z : array
        ``(B, D)`` points.
    mu, logvar : array
        ``(K, D)`` component means and log-variances.
    log_weights : array, optional
        ``(K,)`` unnormalised log mixture weights (normalised inside); ``None``
        gives every component weight ``1/K``.

    Returns
    -------
    array
        ``(B,)`` log-densities, namespace, dtype and device of the inputs;
        differentiable in every argument.

    Raises
    ------
    ValueError
        Shapes other than ``z (B, D)``, ``mu``/``logvar (K, D)``, ``log_weights (K,)``.
    TypeError
        Mixed array libraries or non-floating arrays.

    Notes
    -----
    .. math::

        \log p(z_i) = \log \sum_k w_k \prod_d \mathcal N(z_{id}; \mu_{kd}, e^{v_{kd}}),
        \qquad w_k = \frac{e^{\ell_k}}{\sum_l e^{\ell_l}},

    as a max-shifted log-sum-exp over ``k`` of the joint log-densities, so
    components that underflow (well-separated mixtures) cost no digits: the
    error is a few eps of the responsibility-weighted size of the summed
    terms. The work runs in ``(b, K)`` tiles of the aggregate-posterior engine;
    no ``(B, K, D)`` array is formed, forward or backward (torch's backward
    recomputes the tiles).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import gaussian_mixture_log_density
    >>> mu = np.array([[-2.0], [2.0]])
    >>> logvar = np.zeros((2, 1))
    >>> gaussian_mixture_log_density(np.array([[0.0]]), mu, logvar).round(6)  # N(0; +-2, 1)
    array([-2.918939])
    """
    xp, (z, mu, logvar, log_weights) = resolve(
        {"z": z, "mu": mu, "logvar": logvar, "log_weights": log_weights}
    )
    _check(z, mu, logvar, log_weights)
    if log_weights is not None:
        log_weights = normalised_log_weights(log_weights, xp=xp)
    return mixture_log_densities(z, mu, logvar, log_weights, xp=xp, marginals=False)[0]
