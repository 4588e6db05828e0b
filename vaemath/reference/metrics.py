"""Evaluation of a trained VAE: ELBO terms, full-dataset decomposition, active units, MIG.

Every metric is a public vaemath function; nothing is re-derived here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch

import vaemath
from vaemath._lib._progress import Progress

from .data import Dataset
from .model import VAE
from .objectives import reconstruction_nll

__all__ = ["encode_dataset", "evaluate"]


@torch.no_grad()
def encode_dataset(
    model: VAE, images: torch.Tensor, *, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of every image, ``(N, D)`` each."""
    mus, logvars = [], []
    for start in range(0, images.shape[0], batch_size):
        mu, logvar = model.encode(images[start : start + batch_size])
        mus.append(mu)
        logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def evaluate(
    model: VAE,
    dataset: Dataset,
    *,
    prior_mu: float,
    prior_scale: float,
    seed: int = 0,
    bandwidth: float | None = None,
    progress: bool | Callable[[int, int], Any] = True,
) -> dict[str, Any]:
    """Full-dataset metrics of a trained model (nats per example unless noted).

    ``elbo``/``recon``/``kl`` use one posterior sample per image; ``mi``/``tc``/
    ``dimkl`` are the exact full-dataset decomposition of the aggregate posterior
    by :func:`vaemath.dataset_decomposition`;
    ``mmd2`` is the MMD² between the sampled codes and the prior from
    :func:`vaemath.mmd2_gaussian_prior` (sample-free in the prior) and
    ``mmd2_sampled`` the same with as many prior draws, from :func:`vaemath.mmd2`
    (RBF length scale ``bandwidth``, default ``sqrt(D) * prior_scale``);
    ``active_units`` from :func:`vaemath.active_units`; ``mig`` is Chen et al.'s
    MIG from :func:`vaemath.mutual_information_gap` (``estimator="mixture"``, one
    sample per image) and ``mig_histogram`` disentanglement_lib's (20 bins of the
    means).

    ``progress``: ``True`` shows one progress bar (one line off a terminal) over
    the decomposition, the slow part; ``False`` none; a callable is passed on to
    :func:`vaemath.dataset_decomposition` as ``progress(done, total)``.
    """
    model.eval()
    images = torch.from_numpy(dataset.images)
    prior_logvar = 2.0 * math.log(prior_scale)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mu, logvar = encode_dataset(model, images)
        z = VAE.sample(mu, logvar)
        recon = torch.cat(
            [
                reconstruction_nll(model.decode(z[s : s + 512]), images[s : s + 512])
                for s in range(0, images.shape[0], 512)
            ]
        ).mean()
        kl_per_unit = vaemath.gaussian_kl(mu, logvar, prior_mu, prior_logvar).mean(0)
        kl = kl_per_unit.sum()
        own = Progress(len(dataset), desc="evaluate", unit="image") if progress is True else None
        report = own if own is not None else (progress or None)
        with own or nullcontext():
            parts = vaemath.dataset_decomposition(
                mu, logvar, prior_mu, prior_logvar, num_samples=1, progress=report
            )
        mi = float(parts.mutual_information)
        tc = float(parts.total_correlation)
        dimkl = float(parts.dimensionwise_kl)
        length = math.sqrt(mu.shape[1]) * prior_scale if bandwidth is None else bandwidth
        mmd2 = float(vaemath.mmd2_gaussian_prior(z, prior_mu, prior_logvar, bandwidth=length))
        prior_draws = prior_mu + prior_scale * torch.randn_like(z)
        mmd2_sampled = float(vaemath.mmd2(z, prior_draws, kernel="rbf", bandwidth=length))
    mig = vaemath.mutual_information_gap(mu, logvar, dataset.factors, seed=seed)
    binned = vaemath.mutual_information_gap(mu, logvar, dataset.factors, estimator="histogram")
    return {
        "elbo": float(-(recon + kl)),
        "recon": float(recon),
        "kl": float(kl),
        "kl_per_unit": [float(v) for v in kl_per_unit],
        "mi": mi,
        "tc": tc,
        "dimkl": dimkl,
        "mmd2": mmd2,
        "mmd2_sampled": mmd2_sampled,
        "active_units": int(vaemath.active_units(mu)),
        "mig": float(mig.score),
        "mig_per_factor": dict(zip(dataset.factor_names, mig.gap.tolist(), strict=True)),
        "mig_histogram": float(binned.score),
        "mi_matrix": mig.mutual_information.T.tolist(),
        "factor_entropy": mig.factor_entropy.tolist(),
    }
