"""Public disentanglement metrics: the Mutual Information Gap and active units."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._estimators import check_num_queries, query_points
from .._lib._compat import device
from .._lib._helpers import (
    Array,
    check_choice,
    check_encodings,
    check_index,
    no_grad,
    numpy_quiet,
    resolve,
    to_numpy,
)
from .._lib._progress import progress_reporter
from ._factors import factor_codes, plugin_entropy
from ._mixture import histogram_information, mixture_information

__all__ = ["ESTIMATORS", "MutualInformationGap", "active_units", "mutual_information_gap"]

ESTIMATORS = ("mixture", "histogram")
"""Estimators of :math:`I(z_j; v_k)`: Chen et al.'s mixture, disentanglement_lib's bins."""


@dataclass(frozen=True)
class MutualInformationGap:
    r"""Result of :func:`mutual_information_gap` (arrays of the namespace and dtype of ``mu``).

    Attributes
    ----------
    gap : array
        ``(K,)``: :math:`(I(z_{j_1}; v_k) - I(z_{j_2}; v_k)) / H(v_k)` with
        :math:`j_1, j_2` the two latents of largest :math:`I` for factor ``k``;
        NaN for a factor with a single value.
    score : array
        0-d: the mean of ``gap`` over the factors with :math:`H(v_k) > 0`.
    mutual_information : array
        ``(D, K)``: :math:`I(z_j; v_k)` in nats (estimates, not clamped at 0).
    factor_entropy : array
        ``(K,)``: plug-in :math:`H(v_k)` of the labels, in nats.
    """

    gap: Array
    score: Array
    mutual_information: Array
    factor_entropy: Array


def _gaps(information: np.ndarray, entropy: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-factor normalised gap of the two largest MIs, and their mean over H > 0."""
    top = -np.sort(-information, axis=0)  # descending per factor; NaN columns handled below
    gap = np.full(entropy.shape, math.nan)
    informative = entropy > 0
    gap[informative] = (top[0] - top[1])[informative] / entropy[informative]
    gap[np.any(np.isnan(information), axis=0)] = math.nan
    if not bool(np.any(informative)):
        msg = "every factor has a single value (H(v_k) = 0): the gap is undefined"
        raise ValueError(msg)
    return gap, float(np.mean(gap[informative]))


@numpy_quiet
def mutual_information_gap(
    mu: Array,
    logvar: Array,
    factors: Any,
    *,
    estimator: str = "mixture",
    num_samples: int = 1,
    num_bins: int = 20,
    seed: int = 0,
    progress: bool | Callable[[int, int], Any] | None = None,
    num_queries: int | None = None,
) -> MutualInformationGap:
    r"""Mutual Information Gap (Chen et al. 2018) of an encoder on labelled data.

    Parameters
    ----------
    mu, logvar : array
        ``(N, D)`` encoder means and log-variances of ``N`` points, ``D >= 2``.
    factors : array
        ``(N, K)`` ground-truth labels, NumPy or the library of ``mu``: any
        integer dtype (compared for equality only) or floating with integral
        values.
    estimator : {"mixture", "histogram"}
        How :math:`I(z_j; v_k)` is estimated (see Notes).
    num_samples : int
        ``"mixture"``: samples :math:`z \sim q(z|x_n)` per query point.
    num_bins : int
        ``"histogram"``: bins per latent (at least 2).
    seed : int
        Seed of the NumPy ``Generator`` that picks the query subset and draws
        the noise (float64): the same samples on every backend.
    progress : bool or callable, optional
        ``True``: a progress bar on stderr; a callable is called as
        ``progress(done, total)``; ``"mixture"`` only.
    num_queries : int, optional
        Run over a uniform random subset of this many points (Chen et al.'s
        dSprites protocol: 10,000); ``None``: all ``N``. ``"mixture"``: the
        mixtures keep all ``N`` components; ``"histogram"``: the bins and
        tables use the subset, as disentanglement_lib's sampled points.

    Returns
    -------
    MutualInformationGap
        ``gap`` ``(K,)``, ``score`` (0-d), ``mutual_information`` ``(D, K)``
        and ``factor_entropy`` ``(K,)``, in the namespace, dtype and device of
        ``mu``. Not differentiable (torch inputs are detached).

    Raises
    ------
    ValueError
        Shapes that do not match, ``D < 2``, labels that are not integer-valued,
        an unknown ``estimator``, ``num_samples < 1``, ``num_bins < 2``,
        ``num_queries`` outside ``1 .. N``, or no factor with more than one value.
    TypeError
        ``factors`` from a third library, or a non-integer option.

    Notes
    -----
    For each factor :math:`v_k` with :math:`j_1, j_2` the latents of largest
    :math:`I(z_j; v_k)`,

    .. math::

        \mathrm{MIG} = \frac1K \sum_k \frac{I(z_{j_1}; v_k) - I(z_{j_2}; v_k)}{H(v_k)}.

    ``"mixture"`` (Chen et al.) uses the encoder's own densities,
    :math:`q(z_j) = \frac1N \sum_n q(z_j|x_n)` and
    :math:`q(z_j|v_k{=}a) = \frac1{N_a} \sum_{n: v_{kn}=a} q(z_j|x_n)`:

    .. math::

        I(z_j; v_k) = H(z_j) - \sum_a p(a)\, H(z_j \mid v_k{=}a)
        = E_{n,\, z \sim q(z|x_n)}\bigl[\log q(z_j \mid v_{kn}) - \log q(z_j)\bigr],

    by Monte Carlo over ``z`` with the exact mixtures over all of their
    components, in bounded-memory tiles: memory :math:`O(bN + SND)`, time
    :math:`O(S M N D (1 + \sum_k \sum_a p_a^2))` for ``M`` query points.
    ``"histogram"`` (Locatello et al. 2019, disentanglement_lib) cuts each
    column of ``mu`` into ``num_bins`` equal-width bins (edges in float64) and
    takes the plug-in mutual information of the contingency tables
    (scikit-learn's ``mutual_info_score``); it ignores ``logvar``. Both use the
    plug-in entropy :math:`H(v_k)` of the labels.

    References
    ----------
    Chen, Li, Grosse, Duvenaud (2018), Isolating sources of disentanglement in
    variational autoencoders. Locatello et al. (2019), Challenging common
    assumptions in the unsupervised learning of disentangled representations.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import mutual_information_gap
    >>> v = np.repeat(np.arange(4), 50)[:, None]           # one factor, 4 values
    >>> mu = np.stack([v[:, 0] * 2.0, np.zeros(200)], 1)   # latent 0 encodes it
    >>> out = mutual_information_gap(mu, np.full((200, 2), -4.0), v)
    >>> round(float(out.score), 2)                         # I = H(v) = log 4 on z_0
    1.0
    """
    xp, (mu, logvar) = resolve({"mu": mu, "logvar": logvar})
    n, d = check_encodings(mu, logvar)
    if d < 2:
        msg = f"a gap needs at least two latents, got D = {d}"
        raise ValueError(msg)
    check_choice("estimator", estimator, ESTIMATORS)
    samples = check_index("num_samples", num_samples, low=1)
    bins = check_index("num_bins", num_bins, low=2)
    seed = check_index("seed", seed, low=0)
    queries = check_num_queries(num_queries, n)
    labels = factor_codes(factors, n, xp=xp)
    k = labels.codes.shape[1]
    report, bar = progress_reporter(
        progress, samples * (queries or n) * (1 + k), desc="mutual_information_gap", unit="rows"
    )
    dtype, dev = mu.dtype, device(mu)
    if hasattr(mu, "detach"):
        mu, logvar = mu.detach(), logvar.detach()
    try:
        if estimator == "mixture":
            entropy = np.array([plugin_entropy(labels.codes[:, f]) for f in range(k)])
            with no_grad(xp):
                information = mixture_information(
                    mu,
                    logvar,
                    labels,
                    num_samples=samples,
                    num_queries=queries,
                    seed=seed,
                    xp=xp,
                    progress=report,
                )
            host = np.asarray(to_numpy(information), dtype=np.float64)
        else:
            points = None
            if queries is not None:  # the subset the mixture estimator's queries use
                points = query_points(n, queries, np.random.default_rng(seed))
            used = labels.codes if points is None else labels.codes[points]
            entropy = np.array([plugin_entropy(used[:, f]) for f in range(k)])
            host = histogram_information(mu, labels, num_bins=bins, points=points)
            information = xp.asarray(host, dtype=dtype, device=dev)
            if report is not None:
                report(samples * (queries or n) * (1 + k), samples * (queries or n) * (1 + k))
    finally:
        if bar is not None:
            bar.close()
    gap, score = _gaps(host, entropy)
    return MutualInformationGap(
        gap=xp.asarray(gap, dtype=dtype, device=dev),
        score=xp.asarray(score, dtype=dtype, device=dev),
        mutual_information=information,
        factor_entropy=xp.asarray(entropy, dtype=dtype, device=dev),
    )


@numpy_quiet
def active_units(mu: Array, *, threshold: float = 0.01) -> Array:
    r"""Number of active latents (Burda et al. 2016): :math:`\mathrm{Var}_x E[z_j|x] > \delta`.

    Parameters
    ----------
    mu : array
        ``(N, D)`` posterior means :math:`E[z|x_n]` of ``N`` points.
    threshold : float
        :math:`\delta`, the variance above which a latent counts as active.

    Returns
    -------
    array
        0-d, the dtype of ``mu``: the count, NaN if a latent's variance is NaN
        (a floating count, so that NaN in gives NaN out).

    Notes
    -----
    .. math::

        A_j = \frac1N \sum_n \bigl(\mu_{nj} - \bar\mu_j\bigr)^2,
        \qquad \mathrm{AU} = \#\{j : A_j > \delta\}.

    A collapsed latent (the posterior equal to the prior for every ``x``) has
    :math:`A_j = 0`. The variance is the population one (``correction=0``).

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import active_units
    >>> mu = np.stack([np.linspace(-1, 1, 100), np.full(100, 0.3)], axis=1)
    >>> float(active_units(mu))
    1.0
    """
    xp, (mu,) = resolve({"mu": mu})
    if mu.ndim != 2 or 0 in tuple(mu.shape):
        msg = f"`mu` must have a non-empty shape (N, D), got {tuple(mu.shape)}"
        raise ValueError(msg)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        msg = f"`threshold` must be a real number, got {threshold!r}"
        raise TypeError(msg)
    if hasattr(mu, "detach"):
        mu = mu.detach()
    spread = xp.var(mu, axis=0)
    count = xp.sum(xp.astype(spread > threshold, mu.dtype))
    nan = xp.asarray(math.nan, dtype=mu.dtype, device=device(mu))
    return xp.where(xp.any(xp.isnan(spread)), nan, count)
