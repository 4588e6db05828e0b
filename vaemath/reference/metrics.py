"""Evaluation of a trained VAE: ELBO terms, full-dataset decomposition, active units, MIG."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch

import vaemath
from vaemath._lib._progress import Progress

from .data import Dataset
from .model import VAE
from .objectives import reconstruction_nll

__all__ = [
    "active_units",
    "discrete_mutual_information",
    "encode_dataset",
    "evaluate",
    "mutual_information_gap",
]


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) between two integer label vectors of equal length."""
    a = np.unique(np.asarray(a), return_inverse=True)[1].ravel()
    b = np.unique(np.asarray(b), return_inverse=True)[1].ravel()
    joint = np.zeros((a.max() + 1, b.max() + 1), dtype=np.float64)
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa = joint.sum(1, keepdims=True)
    pb = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])))


def _entropy(labels: np.ndarray) -> float:
    counts = np.unique(labels, return_counts=True)[1].astype(np.float64)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def _discretise(codes: np.ndarray, n_bins: int) -> np.ndarray:
    """Each column cut into ``n_bins`` equal-width bins over its own range."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        column = codes[:, j]
        edges = np.histogram_bin_edges(column, bins=n_bins)
        out[:, j] = np.digitize(column, edges[1:-1])
    return out


def mutual_information_gap(
    codes: np.ndarray, factors: np.ndarray, *, n_bins: int = 20
) -> dict[str, Any]:
    r"""Mutual Information Gap of Chen et al. (2018), with discretised latents.

    .. math::

        \mathrm{MIG} = \frac1K \sum_{k=1}^K \frac{1}{H(v_k)}
        \Bigl(I(z_{j^{(k)}}; v_k) - \max_{j \ne j^{(k)}} I(z_j; v_k)\Bigr),
        \qquad j^{(k)} = \arg\max_j I(z_j; v_k).

    Each latent (e.g. the posterior means) is cut into ``n_bins`` equal-width
    bins and the mutual informations are plug-in estimates on the contingency
    tables, as in Locatello et al. (2019). Constant factors (zero entropy) are
    skipped.

    Parameters
    ----------
    codes : ndarray, shape ``(N, D)``
    factors : ndarray of int, shape ``(N, K)``
    n_bins : int

    Returns
    -------
    dict
        ``mig`` (float in [0, 1]), ``per_factor`` (list of K gaps, NaN for a
        constant factor), ``mi`` (K x D matrix of I(z_j; v_k) in nats) and
        ``entropy`` (K factor entropies).
    """
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        msg = f"codes (N, D) and factors (N, K) must share N, got {codes.shape}, {factors.shape}"
        raise ValueError(msg)
    binned = _discretise(codes, n_bins)
    n_factors, n_latents = factors.shape[1], codes.shape[1]
    mi = np.zeros((n_factors, n_latents))
    for k in range(n_factors):
        for j in range(n_latents):
            mi[k, j] = discrete_mutual_information(binned[:, j], factors[:, k])
    entropy = np.array([_entropy(factors[:, k]) for k in range(n_factors)])
    gaps = []
    for k in range(n_factors):
        if entropy[k] <= 0 or n_latents < 2:
            gaps.append(math.nan if entropy[k] <= 0 else float(mi[k].max() / entropy[k]))
            continue
        top = np.sort(mi[k])[::-1]
        gaps.append(float((top[0] - top[1]) / entropy[k]))
    valid = [g for g in gaps if not math.isnan(g)]
    return {
        "mig": float(np.mean(valid)) if valid else math.nan,
        "per_factor": gaps,
        "mi": mi.tolist(),
        "entropy": entropy.tolist(),
    }


def active_units(mu: np.ndarray, *, threshold: float = 0.01) -> int:
    """Number of latents whose posterior mean varies across the data: Var_x E[z_j|x] > threshold.

    The criterion of Burda et al. (2016).
    """
    return int(np.sum(np.var(np.asarray(mu, dtype=np.float64), axis=0) > threshold))


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
    ``active_units`` and ``mig`` (on the posterior means) as defined above.

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
    mu_np = mu.numpy()
    mig = mutual_information_gap(mu_np, dataset.factors)
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
        "active_units": active_units(mu_np),
        "mig": mig["mig"],
        "mig_per_factor": dict(zip(dataset.factor_names, mig["per_factor"], strict=True)),
        "mi_matrix": mig["mi"],
        "factor_entropy": mig["entropy"],
    }
