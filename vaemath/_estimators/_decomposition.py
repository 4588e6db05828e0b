"""What the estimators share: the result type, input checks, and the engine dispatch."""

from __future__ import annotations

from dataclasses import dataclass

from .._gaussian import log_density
from .._lib._compat import device, is_torch_namespace
from .._lib._helpers import Array, Namespace, broadcast_shapes, numpy_quiet, resolve
from . import _tiles
from ._bias import check_bias_correction, jackknife_shifts
from ._mixture import mixture_log_densities, normalised_log_weights
from ._weights import LogWeights, check_options, log_weights

__all__ = [
    "ElboDecomposition",
    "check_mixture_prior",
    "check_prior",
    "decompose",
    "log_q",
    "prepare",
    "prior_log_densities",
]


@dataclass(frozen=True)
class ElboDecomposition:
    r"""The three terms of the aggregate KL, :math:`\mathrm{KL} = I + \mathrm{TC} + \mathrm{DWKL}`.

    Attributes
    ----------
    mutual_information : array
        0-d estimate of :math:`I(x; z) = E[\log q(z|x) - \log q(z)]`.
    total_correlation : array
        0-d estimate of :math:`E[\log q(z) - \sum_d \log q(z_d)]`.
    dimensionwise_kl : array
        0-d estimate of :math:`\sum_d E[\log q(z_d) - \log p(z_d)]`.
    prior_dependence : array
        0-d estimate of :math:`E[\sum_d \log p(z_d) - \log p(z)]`, the total
        correlation of the prior along the aggregate posterior: exactly 0 for a
        diagonal Gaussian prior, nonzero for a mixture prior (which does not
        factorise). ``kl`` includes it.
    """

    mutual_information: Array
    total_correlation: Array
    dimensionwise_kl: Array
    prior_dependence: Array

    @property
    def kl(self) -> Array:
        """The sum of the four, the estimate of :math:`E_x[\\mathrm{KL}(q(z|x) \\| p(z))]`."""
        return _sum_terms(
            self.mutual_information,
            self.total_correlation,
            self.dimensionwise_kl,
            self.prior_dependence,
        )


@numpy_quiet
def _sum_terms(a: Array, b: Array, c: Array, e: Array) -> Array:
    return a + b + c + e


# -- validation ------------------------------------------------------------------------


def _check_latents(z: Array, mu: Array, logvar: Array) -> tuple[int, int]:
    for name, value in (("z", z), ("mu", mu), ("logvar", logvar)):
        if value.ndim not in (1, 2) or (name == "z" and value.ndim != 2):
            msg = f"`{name}` must have shape (B, D), got {tuple(value.shape)}"
            raise ValueError(msg)
    b, d = z.shape
    try:
        shape = broadcast_shapes(
            {"z": tuple(z.shape), "mu": tuple(mu.shape), "logvar": tuple(logvar.shape)}
        )
    except ValueError:
        shape = None
    if shape != tuple(z.shape):
        msg = (
            "`mu` and `logvar` must broadcast to the shape (B, D) of `z`, got "
            f"{tuple(z.shape)}, {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
        raise ValueError(msg)
    if b < 1 or d < 1:
        msg = f"`z` must have at least one sample and one dimension, got shape {tuple(z.shape)}"
        raise ValueError(msg)
    return int(b), int(d)


def check_prior(shape: tuple[int, int], prior_mu: Array, prior_logvar: Array) -> None:
    shapes = {
        "z": shape,
        "prior_mu": tuple(prior_mu.shape),
        "prior_logvar": tuple(prior_logvar.shape),
    }
    if broadcast_shapes(shapes) != shape:
        msg = (
            f"`prior_mu` {shapes['prior_mu']} and `prior_logvar` {shapes['prior_logvar']} "
            f"must broadcast to the latent shape {shape}"
        )
        raise ValueError(msg)


def log_q(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    *,
    xp: Namespace,
    jackknife: float | None = None,
    joint: bool = True,
    marginals: bool = True,
) -> tuple[Array | None, Array | None]:
    """``log q(z_i)`` ``(B,)`` and ``log q(z_id)`` ``(B, D)`` through the right adapter.

    ``jackknife``: the finite-population factor from :func:`prepare` (``None``:
    no bias correction). ``joint`` / ``marginals`` ``False``: the caller does
    not use that result, which comes back as ``None`` (and is not corrected).
    """
    lq: Array | None
    lqd: Array | None
    if is_torch_namespace(xp):
        from ._torch import log_aggregate_torch

        lq, lqd = log_aggregate_torch(z, mu, logvar, weights)
    else:
        lq, lqd, _ = _tiles.forward(z, mu, logvar, weights, xp=xp)
    if jackknife is not None:
        shift, shift_d = jackknife_shifts(
            z, mu, logvar, weights, fpc=jackknife, xp=xp, joint=joint, marginals=marginals
        )
        lq = None if not joint or lq is None or shift is None else lq + shift
        lqd = None if not marginals or lqd is None or shift_d is None else lqd + shift_d
    return (lq if joint else None), (lqd if marginals else None)


def prior_log_densities(
    z: Array,
    prior_mu: Array,
    prior_logvar: Array,
    prior_log_weights: Array | None,
    *,
    xp: Namespace,
) -> tuple[Array, Array]:
    """``log p(z_i)`` ``(B,)`` and ``sum_d log p(z_id)`` ``(B,)`` under the prior.

    Diagonal Gaussian (``prior_log_weights=None``): the two are the same sum.
    Gaussian mixture: ``prior_mu``/``prior_logvar`` broadcast to ``(K, D)``, and
    the marginals are the exact one-dimensional mixtures.
    """
    if prior_log_weights is None:
        log_pz = log_density(z, prior_mu, prior_logvar, xp=xp)
        log_pz = xp.sum(xp.broadcast_to(log_pz, tuple(z.shape)), axis=-1)
        return log_pz, log_pz
    shape = (int(prior_log_weights.shape[0]), int(z.shape[1]))
    means = xp.broadcast_to(prior_mu, shape)
    logvars = xp.broadcast_to(prior_logvar, shape)
    log_w = normalised_log_weights(prior_log_weights, xp=xp)
    log_pz, log_pzd = mixture_log_densities(z, means, logvars, log_w, xp=xp, marginals=True)
    return log_pz, xp.sum(log_pzd, axis=-1)


def decompose(
    log_qzx: Array,
    log_pz: Array,
    lq: Array,
    lqd: Array,
    *,
    xp: Namespace,
    sum_log_pzd: Array | None = None,
) -> ElboDecomposition:
    """Batch means of the terms from per-sample log-densities.

    ``sum_log_pzd``: ``sum_d log p(z_id)`` when the prior does not factorise
    (``None``: it equals ``log_pz``, and the prior dependence is exactly 0).
    """
    sum_lqd = xp.sum(lqd, axis=-1)
    if sum_log_pzd is None:
        dependence = xp.zeros((), dtype=log_pz.dtype, device=device(log_pz))
        sum_log_pzd = log_pz
    else:
        dependence = xp.mean(sum_log_pzd - log_pz)
    return ElboDecomposition(
        mutual_information=xp.mean(log_qzx - lq),
        total_correlation=xp.mean(lq - sum_lqd),
        dimensionwise_kl=xp.mean(sum_lqd - sum_log_pzd),
        prior_dependence=dependence,
    )


def prepare(
    z: Array,
    mu: Array,
    logvar: Array,
    *,
    prior_mu: Array | float | None,
    prior_logvar: Array | float | None,
    dataset_size: int | None,
    method: str,
    prior_log_weights: Array | None = None,
    bias_correction: str | None = None,
) -> tuple[Namespace, list[Array], LogWeights, float | None]:
    """Resolve and check the arguments; the arrays come back as
    ``[z, mu, logvar, prior_mu, prior_logvar, prior_log_weights]``, then the
    weights and the jackknife factor of ``bias_correction`` (``None``: none)."""
    xp, arrays = resolve(
        {
            "z": z,
            "mu": mu,
            "logvar": logvar,
            "prior_mu": prior_mu,
            "prior_logvar": prior_logvar,
            "prior_log_weights": prior_log_weights,
        }
    )
    batch, dim = _check_latents(*arrays[:3])
    for i in (1, 2):  # a shared mu / logvar ((D,), (1, D)) broadcasts to z's (B, D)
        if tuple(arrays[i].shape) != (batch, dim):
            arrays[i] = xp.broadcast_to(arrays[i], (batch, dim))
    n = check_options(batch, dataset_size, method)
    if arrays[5] is not None:
        check_mixture_prior(dim, arrays[3], arrays[4], arrays[5])
    elif arrays[3] is not None:
        check_prior((batch, dim), arrays[3], arrays[4])
    jackknife = check_bias_correction(bias_correction, batch, n)
    return xp, arrays, log_weights(batch, n, method), jackknife


def check_mixture_prior(
    dim: int, prior_mu: Array, prior_logvar: Array, prior_log_weights: Array
) -> None:
    """A ``(K,)`` weight vector and component parameters broadcasting to ``(K, D)``."""
    if prior_log_weights.ndim != 1 or prior_log_weights.shape[0] < 1:
        msg = f"`prior_log_weights` must have shape (K,), got {tuple(prior_log_weights.shape)}"
        raise ValueError(msg)
    shape = (int(prior_log_weights.shape[0]), dim)
    if prior_mu is None or prior_logvar is None:
        msg = "a mixture prior needs `prior_mu` and `prior_logvar` broadcasting to (K, D)"
        raise ValueError(msg)
    try:
        found = broadcast_shapes(
            {"components": shape, "prior_mu": tuple(prior_mu.shape),
             "prior_logvar": tuple(prior_logvar.shape)}
        )  # fmt: skip
    except ValueError:
        found = None
    if found != shape:
        msg = (
            f"with `prior_log_weights` of shape ({shape[0]},), `prior_mu` "
            f"{tuple(prior_mu.shape)} and `prior_logvar` {tuple(prior_logvar.shape)} must "
            f"broadcast to (K, D) = {shape}"
        )
        raise ValueError(msg)
