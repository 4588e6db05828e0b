r"""The four training objectives, every divergence term taken from vaemath.

All losses are per-example averages over a minibatch, in nats, to be minimised:

* ``elbo``:    :math:`\mathrm{rec} + \mathrm{KL}`
* ``beta``:    :math:`\mathrm{rec} + \beta\,\mathrm{KL}` (Higgins et al. 2017)
* ``betatc``:  :math:`\mathrm{rec} + \alpha\,I_q(x;z) + \beta\,\mathrm{TC}(z)
  + \gamma \sum_j \mathrm{KL}(q(z_j)\,\|\,p(z_j))` (Chen et al. 2018), the three terms
  from :func:`vaemath.elbo_decomposition` (MWS or MSS)
* ``infovae``: :math:`\mathrm{rec} + (1-\alpha)\,\mathrm{KL}
  + (\alpha+\lambda-1)\,\mathrm{MMD}^2(q(z), p(z))` (Zhao et al. 2019), the MMD from
  :func:`vaemath.mmd2_gaussian_prior` (sample-free in the prior)

where :math:`\mathrm{rec} = -\log p(x|z)` (Bernoulli) and
:math:`\mathrm{KL} = \mathrm{KL}(q(z|x)\,\|\,p(z))` from :func:`vaemath.gaussian_kl`,
for any diagonal Gaussian prior :math:`p(z) = \mathcal N(m, s^2 I)`. The uniform box
and the Gaussian mixture of :mod:`vaemath.reference.priors` change the KL, the
decomposition and the MMD terms as described there (the uniform only with InfoVAE
at :math:`\alpha = 1`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .priors import Prior, prior_problem, resolve_prior

__all__ = ["OBJECTIVES", "TERMS", "Weights", "loss_terms", "reconstruction_nll"]

OBJECTIVES = ("elbo", "beta", "betatc", "infovae")

# Every term logged per batch / epoch, in this order.
TERMS = ("loss", "elbo", "recon", "kl", "mi", "tc", "dimkl", "mmd2")


@dataclass(frozen=True)
class Weights:
    """Objective weights (see the module docstring for where each enters)."""

    beta: float = 4.0  # beta-VAE KL weight
    tc_alpha: float = 1.0  # beta-TCVAE: weight of I_q(x; z)
    tc_beta: float = 6.0  # beta-TCVAE: weight of TC(z)
    tc_gamma: float = 1.0  # beta-TCVAE: weight of the dimension-wise KL
    info_alpha: float = 0.5  # InfoVAE alpha: KL weight is 1 - alpha
    info_lambda: float = 1000.0  # InfoVAE lambda: MMD weight is alpha + lambda - 1
    bandwidth: float = 0.0  # RBF length scale; 0 -> sqrt(D) * the prior's sd per unit


def reconstruction_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Bernoulli negative log-likelihood ``-log p(x|z)`` per example, ``(B,)``."""
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return nll.flatten(1).sum(1)


def rbf_bandwidth(weights: Weights, latent_dim: int, prior_scale: float) -> float:
    """The RBF length scale used for MMD: ``weights.bandwidth`` or ``sqrt(D) * s``.

    ``prior_scale`` is the prior's standard deviation per unit (:meth:`Prior.sd`:
    ``s`` for the Gaussian, its root-mean-square for the box and the mixture).
    """
    if weights.bandwidth > 0:
        return weights.bandwidth
    return math.sqrt(latent_dim) * prior_scale


def loss_terms(
    objective: str,
    x: torch.Tensor,
    *,
    logits: torch.Tensor,
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    prior_mu: float | None = None,
    prior_scale: float | None = None,
    weights: Weights,
    dataset_size: int,
    method: str,
    prior: Prior | None = None,
) -> dict[str, torch.Tensor]:
    """The loss of ``objective`` and every logged term (0-d tensors, batch means).

    The prior is ``prior``, or else the Gaussian ``N(prior_mu, prior_scale^2)``.
    Only the terms the objective uses carry gradients; the others are computed
    under ``torch.no_grad`` for the training curves. An objective that has no
    finite loss against the prior (a KL objective and the uniform box) raises
    ``ValueError``.
    """
    prior = resolve_prior(prior, prior_mu, prior_scale)
    if objective in OBJECTIVES:
        problem = prior_problem(prior, objective, weights.info_alpha, int(mu.shape[1]))
        if problem is not None:
            raise ValueError(problem)
    recon = reconstruction_nll(logits, x).mean()
    kl = prior.kl(z, mu, logvar).mean()
    # The decomposition and the MMD are logged for every objective, but only the
    # objective that uses them needs their gradients.
    with torch.set_grad_enabled(objective == "betatc" and torch.is_grad_enabled()):
        mi, tc, dimkl = prior.decomposition(z, mu, logvar, dataset_size=dataset_size, method=method)
    with torch.set_grad_enabled(objective == "infovae" and torch.is_grad_enabled()):
        bandwidth = rbf_bandwidth(weights, mu.shape[1], prior.sd(mu.shape[1]))
        mmd2 = prior.mmd2(z, bandwidth)
    if objective == "elbo":
        loss = recon + kl
    elif objective == "beta":
        loss = recon + weights.beta * kl
    elif objective == "betatc":
        loss = recon + weights.tc_alpha * mi + weights.tc_beta * tc + weights.tc_gamma * dimkl
    elif objective == "infovae":
        info_kl = 0.0 if weights.info_alpha == 1 else (1.0 - weights.info_alpha) * kl
        loss = recon + info_kl + (weights.info_alpha + weights.info_lambda - 1.0) * mmd2
    else:
        msg = f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}"
        raise ValueError(msg)
    return {
        "loss": loss,
        "elbo": -(recon + kl).detach(),
        "recon": recon.detach(),
        "kl": kl.detach(),
        "mi": mi.detach(),
        "tc": tc.detach(),
        "dimkl": dimkl.detach(),
        "mmd2": mmd2.detach(),
    }
