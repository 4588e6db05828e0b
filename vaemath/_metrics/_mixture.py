r"""The two estimators of :math:`I(z_j; v_k)` behind the Mutual Information Gap.

``mixture`` (Chen et al. 2018) runs on the tiled log-sum-exp engine of
``_estimators`` (:func:`log_marginals`), once over all ``N`` components for
:math:`\log q(z_j)` and once per factor value ``a`` over the components with
that value for :math:`\log q(z_j \mid v_k = a)`; nothing of size ``(M, N)``
is formed. ``histogram`` (Locatello et al. 2019) is host NumPy on the means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._estimators import (
    bound_margin,
    fused_block_factors,
    groups_in_tiles,
    log_marginals,
    log_sums_by_group,
    sample_queries,
)
from .._gaussian import log_density, neg_half_log_normaliser
from .._lib._compat import device
from .._lib._helpers import Array, Namespace, to_numpy
from ._factors import FactorCodes, plugin_mutual_information

__all__ = ["histogram_information", "mixture_information"]


_GEMM_VALUES = 12
"""On the eager tiles, factors with at most this many values get their conditionals
from the shared tile (one matrix product with the group indicator, cost ~ A per
element); larger ones are recomputed group by group (cost ~ 1/A per element). Where
the fused kernels serve the shared sums (``groups_in_tiles`` is ``False``), the
factors of ``fused_block_factors`` come from the shared pass (its components sorted
into blocks) and every other factor group by group."""


def mixture_information(
    mu: Array,
    logvar: Array,
    factors: FactorCodes,
    *,
    num_samples: int,
    num_queries: int | None,
    seed: int,
    xp: Namespace,
    progress: Callable[[int, int], Any] | None,
) -> Array:
    r"""``(D, K)`` Monte Carlo estimates of :math:`I(z_j; v_k)` in nats, dtype of ``mu``.

    With queries :math:`z^{(r)} \sim q(z \mid x_{n_r})`, ``S`` per point,

    .. math::

        \hat I(z_j; v_k) = \frac1M \sum_r \Bigl[\log q(z^{(r)}_j \mid v_k = v_{k n_r})
        - \log q(z^{(r)}_j)\Bigr],

    both mixtures over all of their components. Not differentiable: the
    caller passes detached arrays.
    """
    d = int(mu.shape[1])
    dtype, dev = mu.dtype, device(mu)
    drawn = sample_queries(
        mu, logvar, num_samples=num_samples, num_queries=num_queries, seed=seed, xp=xp
    )
    owner, z, own_mu, own_lv = drawn
    # Rows whose own component is within the margin of the density bound take the
    # shared-tile path; the rest (extreme noise or log-variance spreads) the exact one.
    bound = xp.max(neg_half_log_normaliser(logvar, xp=xp), axis=0)
    lag = bound[None, :] - log_density(z, own_mu, own_lv, xp=xp)
    fast = to_numpy(xp.all(lag < bound_margin(dtype, xp=xp), axis=1))
    counter = _Counter(progress, z.shape[0] * (1 + factors.codes.shape[1]))
    totals = [xp.zeros((d,), dtype=dtype, device=dev) for _ in factors.sizes]
    for rows, shared in ((np.flatnonzero(fast), True), (np.flatnonzero(~fast), False)):
        if rows.shape[0]:
            _accumulate(totals, z, mu, logvar, factors, owner, rows, shared, counter, xp=xp)
    counter.finish()
    return xp.stack(totals, axis=1) / z.shape[0]


class _Counter:
    """Maps the engine's per-call ``(done, total)`` onto one job-wide count."""

    def __init__(self, progress: Callable[[int, int], Any] | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def call(self) -> Callable[[int, int], None] | None:
        if self.progress is None:
            return None
        start = self.done
        return lambda done, _total: self.progress(start + done, self.total)  # type: ignore[misc]

    def add(self, rows: int) -> None:
        self.done += rows

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(self.total, self.total)


def _log_means(
    z: Array,
    mu: Array,
    logvar: Array,
    codes: np.ndarray | None,
    own_codes: np.ndarray | None,
    *,
    shared: bool,
    xp: Namespace,
    progress: Callable[[int, int], None] | None,
) -> tuple[Array, Array | None]:
    """``log (1/N) sum_j q(z|x_j)`` per dimension, and the selected groups' log-sums."""
    if shared:
        total, groups = log_sums_by_group(z, mu, logvar, codes, own_codes, xp=xp, progress=progress)
        return total - math.log(mu.shape[0]), groups
    return log_marginals(z, mu, logvar, xp=xp, progress=progress), None


def _accumulate(  # noqa: PLR0917 - private, one caller
    totals: list[Array],
    z: Array,
    mu: Array,
    logvar: Array,
    factors: FactorCodes,
    owner: np.ndarray,
    rows: np.ndarray,
    shared: bool,
    counter: _Counter,
    *,
    xp: Namespace,
) -> None:
    """Add ``sum_r [log q(z_r | v_k) - log q(z_r)]`` over ``rows`` to ``totals[k]``.

    ``shared``: the rows satisfy :func:`log_sums_by_group`'s precondition, and
    the factors with few values take their conditionals from the same tiles.
    """
    dtype, dev = z.dtype, device(z)
    idx = xp.asarray(rows, device=dev)
    z_rows = xp.take(z, idx, axis=0)
    row_codes = factors.codes[owner[rows]]  # (R, K) codes of the rows' own points
    small: list[int] = []
    if shared and groups_in_tiles(z_rows, mu, xp=xp):
        small = [k for k, a in enumerate(factors.sizes) if a <= _GEMM_VALUES]
    elif shared:  # the fused sums: the smallest factors' groups in blocks of components
        small = fused_block_factors(z_rows, mu, list(factors.sizes), xp=xp)
    codes, own_codes = (factors.codes[:, small], row_codes[:, small]) if small else (None, None)
    marginal, conditional = _log_means(
        z_rows, mu, logvar, codes, own_codes, shared=shared, xp=xp, progress=counter.call()
    )
    counter.add(rows.shape[0] * (1 + len(small)))
    for i, k in enumerate(small):
        assert conditional is not None
        log_size = np.log(np.bincount(factors.codes[:, k]))[row_codes[:, k]]
        sizes = xp.asarray(log_size[:, None], dtype=dtype, device=dev)
        totals[k] = totals[k] + xp.sum(conditional[i, ...] - sizes - marginal, axis=0)
    for k in (k for k in range(len(factors.sizes)) if k not in small):
        order = np.argsort(row_codes[:, k], kind="stable")
        bounds = np.searchsorted(row_codes[order, k], np.arange(factors.sizes[k] + 1))
        for a in range(factors.sizes[k]):
            group = xp.asarray(order[bounds[a] : bounds[a + 1]], device=dev)
            if group.shape[0] == 0:
                continue
            comps = xp.asarray(np.flatnonzero(factors.codes[:, k] == a), device=dev)
            cond, _ = _log_means(
                xp.take(z_rows, group, axis=0),
                xp.take(mu, comps, axis=0),
                xp.take(logvar, comps, axis=0),
                None,
                None,
                shared=shared,
                xp=xp,
                progress=counter.call(),
            )
            counter.add(group.shape[0])
            totals[k] = totals[k] + xp.sum(cond - xp.take(marginal, group, axis=0), axis=0)


def histogram_information(
    mu: Array, factors: FactorCodes, *, num_bins: int, points: np.ndarray | None
) -> np.ndarray:
    """``(D, K)`` plug-in MI (float64, host) of the binned means, disentanglement_lib's way.

    Each column of the means (float64) is cut by the edges of
    ``np.histogram(column, num_bins)`` with ``np.digitize(column, edges[:-1])``
    (bins 1 .. ``num_bins``, the maximum in the last); a column with a
    non-finite value gives NaN.
    """
    means = np.asarray(to_numpy(mu), dtype=np.float64)
    codes = factors.codes
    if points is not None:
        means, codes = means[points], codes[points]
    d, k = means.shape[1], codes.shape[1]
    out = np.full((d, k), math.nan)
    for j in range(d):
        column = means[:, j]
        if not bool(np.all(np.isfinite(column))):
            continue
        edges = np.histogram(column, bins=num_bins)[1]
        binned = np.digitize(column, edges[:-1]) - 1
        for f in range(k):
            out[j, f] = plugin_mutual_information(binned, codes[:, f], factors.sizes[f])
    return out
