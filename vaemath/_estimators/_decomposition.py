"""What the estimators share: the result type, input checks, and the engine dispatch."""

from __future__ import annotations

from dataclasses import dataclass

from .._lib._compat import is_torch_namespace
from .._lib._helpers import Array, Namespace, broadcast_shapes, numpy_quiet, resolve
from . import _tiles
from ._weights import LogWeights, check_options, log_weights

__all__ = ["ElboDecomposition", "check_prior", "decompose", "log_q", "prepare"]


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
    """

    mutual_information: Array
    total_correlation: Array
    dimensionwise_kl: Array

    @property
    def kl(self) -> Array:
        """Their sum, the estimate of :math:`E_x[\\mathrm{KL}(q(z|x) \\| p(z))]`."""
        return _sum_terms(self.mutual_information, self.total_correlation, self.dimensionwise_kl)


@numpy_quiet
def _sum_terms(a: Array, b: Array, c: Array) -> Array:
    return a + b + c


# -- validation ------------------------------------------------------------------------


def _check_latents(z: Array, mu: Array, logvar: Array) -> tuple[int, int]:
    for name, value in (("z", z), ("mu", mu), ("logvar", logvar)):
        if value.ndim != 2:
            msg = f"`{name}` must have shape (B, D), got {tuple(value.shape)}"
            raise ValueError(msg)
    if not (tuple(z.shape) == tuple(mu.shape) == tuple(logvar.shape)):
        msg = (
            "`z`, `mu` and `logvar` must have the same shape (B, D), got "
            f"{tuple(z.shape)}, {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
        raise ValueError(msg)
    b, d = z.shape
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
    z: Array, mu: Array, logvar: Array, weights: LogWeights, *, xp: Namespace
) -> tuple[Array, Array]:
    """``log q(z_i)`` ``(B,)`` and ``log q(z_id)`` ``(B, D)`` through the right adapter."""
    if is_torch_namespace(xp):
        from ._torch import log_aggregate_torch

        return log_aggregate_torch(z, mu, logvar, weights)
    lq, lqd, _ = _tiles.forward(z, mu, logvar, weights, xp=xp)
    return lq, lqd


def decompose(
    log_qzx: Array, log_pz: Array, lq: Array, lqd: Array, *, xp: Namespace
) -> ElboDecomposition:
    """Batch means of the three terms from per-sample log-densities."""
    sum_lqd = xp.sum(lqd, axis=-1)
    return ElboDecomposition(
        mutual_information=xp.mean(log_qzx - lq),
        total_correlation=xp.mean(lq - sum_lqd),
        dimensionwise_kl=xp.mean(sum_lqd - log_pz),
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
) -> tuple[Namespace, list[Array], LogWeights]:
    xp, arrays = resolve(
        {"z": z, "mu": mu, "logvar": logvar, "prior_mu": prior_mu, "prior_logvar": prior_logvar}
    )
    batch, dim = _check_latents(*arrays[:3])
    n = check_options(batch, dataset_size, method)
    if arrays[3] is not None:
        check_prior((batch, dim), arrays[3], arrays[4])
    return xp, arrays, log_weights(batch, n, method)
