"""Evaluation of a trained VAE: ELBO terms, full-dataset decomposition, active units, MIG.

Every metric is a public vaemath function; nothing is re-derived here. Images are
read by batch (:meth:`~vaemath.reference.data.Dataset.batches`), so the lazy full
dSprites grid is never held as one array.
"""

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
from .priors import Prior, resolve_prior

__all__ = ["MIG_QUERIES", "PAIRWISE_LIMIT", "PAIRWISE_POINTS", "encode_dataset", "evaluate"]

#: Query points of the mixture MIG on datasets larger than this (Chen et al.'s
#: dSprites protocol; every point below it).
MIG_QUERIES = 10_000
#: Above this many points the O(N^2) terms (decomposition, MMD^2) are evaluated on
#: a fixed random subset of :data:`PAIRWISE_POINTS` encoded points.
PAIRWISE_LIMIT = 50_000
PAIRWISE_POINTS = 10_000


@torch.no_grad()
def encode_dataset(
    model: VAE, images: Dataset | torch.Tensor, *, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances of every image, ``(N, D)`` each.

    Parameters
    ----------
    model : VAE
        The encoder.
    images : Dataset or Tensor
        A dataset (read with :meth:`Dataset.batches`, so a lazy one stays lazy)
        or an ``(N, H, W)`` tensor.
    batch_size : int
        Images encoded at a time.

    Returns
    -------
    mu, logvar : Tensor
        ``(N, D)`` each, in the order of the images.
    """
    if isinstance(images, Dataset):
        n, blocks = len(images), (torch.from_numpy(x) for x in images.batches(batch_size))
    else:
        n = images.shape[0]
        blocks = (images[s : s + batch_size] for s in range(0, n, batch_size))
    # Written into preallocated outputs: a list of small per-batch results between
    # the batches' large temporaries fragments the heap (RSS grows ~ N x H x W).
    mu = logvar = torch.empty((0, model.latent_dim))
    for start, x in zip(range(0, n, batch_size), blocks, strict=True):
        m, lv = model.encode(x)
        if start == 0:
            mu = torch.empty((n, m.shape[1]), dtype=m.dtype)
            logvar = torch.empty((n, lv.shape[1]), dtype=lv.dtype)
        mu[start : start + m.shape[0]] = m
        logvar[start : start + lv.shape[0]] = lv
    return mu, logvar


def _mean_gap(gap: np.ndarray, entropy: np.ndarray, keep: np.ndarray) -> float:
    """MIG over the factors ``keep`` with ``H(v_k) > 0``, as ``mutual_information_gap`` scores."""
    used = keep & (entropy > 0)
    return float(np.mean(gap[used])) if bool(np.any(used)) else math.nan


def _scaled(progress: Callable[[int, int], Any], n: int) -> Callable[[int, int], None]:
    """``progress`` reporting ``done / total`` of a job as a share of ``n`` images."""

    def report(done: int, total: int) -> None:
        progress(n * done // max(total, 1), n)

    return report


@torch.no_grad()
def evaluate(
    model: VAE,
    dataset: Dataset,
    *,
    prior_mu: float | None = None,
    prior_scale: float | None = None,
    seed: int = 0,
    bandwidth: float | None = None,
    progress: bool | Callable[[int, int], Any] = True,
    prior: Prior | None = None,
) -> dict[str, Any]:
    r"""Full-dataset metrics of a trained model (nats per example unless noted).

    Parameters
    ----------
    model : VAE
        The trained model (put in eval mode).
    dataset : Dataset
        The images it is evaluated on, read by batch.
    prior_mu, prior_scale : float, optional
        The Gaussian prior :math:`\mathcal N(m, s^2 I)` it was trained against
        (default :math:`\mathcal N(0, I)`), unless ``prior`` is given.
    seed : int
        Seed of the posterior samples, the prior draws, the query points of the
        MIG and (large datasets) the subset of the pairwise terms.
    bandwidth : float, optional
        RBF length scale of the MMD terms (default ``sqrt(D)`` times the prior's
        standard deviation per unit, :meth:`Prior.sd`).
    progress : bool or callable
        See below.
    prior : Prior, optional
        Any prior of :mod:`vaemath.reference.priors` (then leave ``prior_mu`` and
        ``prior_scale`` out).

    Returns
    -------
    dict
        The keys below, floats (lists and dicts for the per-unit and per-factor
        values), JSON-ready.

    Notes
    -----
    ``elbo``/``recon``/``kl`` use one posterior sample per image; ``mi``/``tc``/
    ``dimkl`` are the exact full-dataset decomposition of the aggregate posterior
    by :func:`vaemath.dataset_decomposition`;
    ``mmd2`` is the MMD² between the sampled codes and the prior from
    :func:`vaemath.mmd2_gaussian_prior` (sample-free in the prior) and
    ``mmd2_sampled`` the same with as many prior draws, from :func:`vaemath.mmd2`
    (RBF length scale ``bandwidth``, default ``sqrt(D) * prior_scale``). On more
    than :data:`PAIRWISE_LIMIT` images (the full dSprites grid) these O(N²) terms
    use a fixed random subset (from ``seed``) of :data:`PAIRWISE_POINTS` encoded
    points, so ``q(z)`` is then a mixture of that many posteriors;
    ``decomposition_points`` and ``mmd_points`` say how many were used.

    ``active_units`` from :func:`vaemath.active_units`. The MIG is
    :func:`vaemath.mutual_information_gap` with ``estimator="mixture"`` (Chen et
    al., one sample per query point, :data:`MIG_QUERIES` query points on larger
    datasets, every point otherwise): ``mig_per_factor``, ``mi_matrix`` (``K x
    D``) and ``factor_entropy`` cover every factor and ``mig_with_shape`` is their
    mean; the headline ``mig`` averages the factors named in ``mig_factors``: on
    dSprites Chen et al.'s protocol leaves ``shape`` out (scale, orientation,
    pos_x, pos_y), elsewhere every factor. Each factor's information is estimated
    separately from the same samples, so this equals a run on those factors
    alone. ``mig_histogram`` is disentanglement_lib's (20 bins of the means, every
    factor, the same query points).

    Other priors (:mod:`vaemath.reference.priors`): MI and TC do not involve the
    prior. The mixture's ``kl`` is the Monte Carlo mean of
    :math:`\log q(z|x) - \log p(z)` at the same samples, ``kl_per_unit`` the
    same against each marginal :math:`p(z_j)`, ``dimkl`` the dimension-wise KL plus
    the prior dependence (the decomposition's against :math:`\mathcal N(0, I)` plus
    the Monte Carlo mean of :math:`\log \mathcal N(z; 0, I) - \log p(z)`, so that
    MI + TC + dimkl estimates the KL of the aggregate posterior), and ``mmd2`` the
    two-sample estimate against as many mixture draws (no ``mmd2_sampled``). With
    the uniform box ``kl``, ``kl_per_unit`` and ``dimkl`` are ``+inf`` and ``elbo``
    ``-inf`` (a Gaussian posterior has mass outside the box), ``mmd2`` comes from
    :func:`vaemath.mmd2_uniform_prior`, and ``mu_variance_per_unit`` (the variance
    of each posterior mean over the data) orders the traversals instead of the KL.

    ``progress``: ``True`` shows one progress bar (one line off a terminal) over
    the decomposition, the slow part; ``False`` none; a callable is called as
    ``progress(done, total)`` with ``total = len(dataset)``.
    """
    model.eval()
    n = len(dataset)
    prior = resolve_prior(prior, prior_mu, prior_scale)
    gaussian = prior.kind == "gaussian"
    # MI and TC do not involve the prior: other priors decompose against N(0, I).
    decompose_mu, decompose_logvar = (prior.mu, prior.logvar) if gaussian else (0.0, 0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mu, logvar = encode_dataset(model, dataset)
        z = VAE.sample(mu, logvar)
        nll = torch.empty((n,), dtype=z.dtype)  # preallocated: see encode_dataset
        for s, x in zip(range(0, n, 512), dataset.batches(512), strict=True):
            nll[s : s + x.shape[0]] = reconstruction_nll(
                model.decode(z[s : s + 512]), torch.from_numpy(x)
            )
        recon = nll.mean()
        kl_per_unit = prior.kl_per_unit(z, mu, logvar).mean(0)
        kl = kl_per_unit.sum() if gaussian else prior.kl(z, mu, logvar).mean()
        if n > PAIRWISE_LIMIT:
            rng = np.random.default_rng(seed)
            pick = torch.from_numpy(np.sort(rng.choice(n, size=PAIRWISE_POINTS, replace=False)))
            sub_mu, sub_logvar, sub_z = mu[pick], logvar[pick], z[pick]
        else:
            sub_mu, sub_logvar, sub_z = mu, logvar, z
        points = int(sub_mu.shape[0])
        own = Progress(n, desc="evaluate", unit="image") if progress is True else None
        report: Callable[[int, int], Any] | None = None
        if own is not None:
            report = own
        elif callable(progress):
            report = progress
        if report is not None and points != n:
            report = _scaled(report, n)
        with own or nullcontext():
            parts = vaemath.dataset_decomposition(
                sub_mu, sub_logvar, decompose_mu, decompose_logvar, num_samples=1, progress=report
            )
        mi = float(parts.mutual_information)
        tc = float(parts.total_correlation)
        dimkl = float(parts.dimensionwise_kl)
        if prior.kind == "mixture":
            standard = vaemath.gaussian_log_density(sub_z, 0.0, 0.0).sum(1)
            dimkl += float((standard - prior.log_density(sub_z)).mean())
        elif prior.kind == "uniform":
            dimkl = math.inf
        length = math.sqrt(mu.shape[1]) * prior.sd(mu.shape[1]) if bandwidth is None else bandwidth
        mmd2 = float(prior.mmd2(sub_z, length))  # sample-free but for the mixture
        extra: dict[str, Any] = {}
        if prior.kind != "mixture":
            prior_draws = prior.sample_like(sub_z)
            extra["mmd2_sampled"] = float(
                vaemath.mmd2(sub_z, prior_draws, kernel="rbf", bandwidth=length)
            )
        if prior.kind == "uniform":
            extra["mu_variance_per_unit"] = [float(v) for v in mu.var(0, correction=0)]
    queries = MIG_QUERIES if n > MIG_QUERIES else None
    factors = dataset.factors
    mig = vaemath.mutual_information_gap(mu, logvar, factors, seed=seed, num_queries=queries)
    binned = vaemath.mutual_information_gap(
        mu, logvar, factors, estimator="histogram", seed=seed, num_queries=queries
    )
    names = dataset.factor_names
    dsprites = dataset.info.get("family") == "dsprites"
    headline = tuple(f for f in names if not (dsprites and f == "shape"))
    gap, entropy = mig.gap.numpy(), mig.factor_entropy.numpy()
    keep = np.isin(np.array(names), np.array(headline))
    return {
        "elbo": float(-(recon + kl)),
        "recon": float(recon),
        "kl": float(kl),
        "kl_per_unit": [float(v) for v in kl_per_unit],
        "mi": mi,
        "tc": tc,
        "dimkl": dimkl,
        "mmd2": mmd2,
        **extra,
        "active_units": int(vaemath.active_units(mu)),
        "mig": _mean_gap(gap, entropy, keep),
        "mig_factors": list(headline),
        "mig_with_shape": float(mig.score),
        "mig_per_factor": dict(zip(names, gap.tolist(), strict=True)),
        "mig_histogram": float(binned.score),
        "mig_queries": n if queries is None else queries,
        "mi_matrix": mig.mutual_information.T.tolist(),
        "factor_entropy": entropy.tolist(),
        "decomposition_points": points,
        "mmd_points": points,
    }
