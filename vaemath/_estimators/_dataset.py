"""Exact full-dataset evaluation of the KL decomposition, streamed in tiles."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._gaussian import log_density
from .._lib._compat import device, is_dask_namespace, is_torch_namespace
from .._lib._helpers import Array, Namespace, check_encodings, check_index, numpy_quiet, resolve
from .._lib._progress import progress_reporter
from . import _tiles
from ._decomposition import ElboDecomposition, check_prior, decompose
from ._weights import LogWeights

__all__ = [
    "Queries",
    "check_num_queries",
    "dataset_decomposition",
    "query_points",
    "sample_queries",
]


class Queries(NamedTuple):
    """Monte Carlo query rows: ``z[r] ~ q(z | x_owner[r])``."""

    owner: np.ndarray  # (M,) index of the point each row was drawn from
    z: Array  # (M, D)
    mu: Array  # (M, D) the owners' means
    logvar: Array  # (M, D) the owners' log-variances


def check_num_queries(num_queries: object, n: int) -> int | None:
    """``None`` or an integer in ``1 .. n``; anything else is a ``ValueError``."""
    if num_queries is None:
        return None
    try:
        queries = check_index("num_queries", num_queries, low=1, kind="an integer or None")
    except TypeError as err:
        raise ValueError(str(err)) from None
    if queries > n:
        msg = f"`num_queries` must be at most N = {n}, got {queries}"
        raise ValueError(msg)
    return queries


def query_points(n: int, num_queries: int | None, rng: np.random.Generator) -> np.ndarray:
    """All ``n`` points in order (``None`` or ``n``: nothing drawn), or a sorted uniform subset."""
    if num_queries is None or num_queries == n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=num_queries, replace=False))


def sample_queries(
    mu: Array,
    logvar: Array,
    *,
    num_samples: int,
    num_queries: int | None,
    seed: int,
    xp: Namespace,
) -> Queries:
    """The query rows of the dataset-level Monte Carlo, a function of ``seed`` alone.

    One NumPy ``Generator(seed)`` first picks the query points (a uniform
    subset of ``num_queries`` without replacement, sorted; none is drawn for
    ``None`` or ``num_queries == N``), then the ``(num_samples, S, D)``
    standard-normal noise in float64; rows are sample-major. Shared by
    :func:`dataset_decomposition` and the mixture MIG.
    """
    n, d = (int(s) for s in mu.shape)
    dtype, dev = mu.dtype, device(mu)
    rng = np.random.default_rng(seed)
    points = query_points(n, num_queries, rng)
    subset = points.shape[0] != n
    noise = rng.standard_normal((num_samples, points.shape[0], d))
    owner = np.tile(points, num_samples)
    if subset:
        idx = xp.asarray(points, device=dev)
        mu, logvar = xp.take(mu, idx, axis=0), xp.take(logvar, idx, axis=0)
    if num_samples > 1:
        mu, logvar = (
            xp.concat([mu] * num_samples, axis=0),
            xp.concat([logvar] * num_samples, axis=0),
        )
    eps = xp.asarray(np.reshape(noise, (-1, d)), dtype=dtype, device=dev)
    return Queries(owner, mu + xp.exp(0.5 * logvar) * eps, mu, logvar)


@numpy_quiet
def dataset_decomposition(
    mu: Array,
    logvar: Array,
    prior_mu: Array | float = 0.0,
    prior_logvar: Array | float = 0.0,
    *,
    num_samples: int = 1,
    seed: int = 0,
    chunk_size: int | None = None,
    progress: bool | Callable[[int, int], Any] | None = None,
    num_queries: int | None = None,
) -> ElboDecomposition:
    r"""Exact (not minibatch) decomposition over a whole encoded dataset, streamed.

    Parameters
    ----------
    mu, logvar : array
        ``(N, D)`` encoder means and log-variances of every data point.
    prior_mu, prior_logvar : array or float
        Diagonal Gaussian prior, broadcastable to ``(N, D)`` (default N(0, I)).
    num_samples : int
        ``S``, samples :math:`z \sim q(z|x_n)` per point.
    seed : int
        Seed of the NumPy ``Generator`` that draws the standard-normal noise
        (float64, converted to the dtype and device of ``mu``); the result is a
        deterministic function of ``(mu, logvar, seed)`` on every backend.
    chunk_size : int, optional
        Query rows per work tile (default: about 128 Ki elements per tile).
    progress : bool or callable, optional
        ``True``: a progress bar on stderr (tqdm, with ETA, on a terminal;
        one final line elsewhere). A callable is called as
        ``progress(done, total)`` after each tile of query rows. Not
        supported with dask arrays (a ``ValueError``).
    num_queries : int, optional
        Run the Monte Carlo over a uniform random subset of this many of the
        ``N`` points (without replacement, from ``seed``; Chen et al.'s
        dSprites protocol uses 10,000), each query's :math:`\log q(z)` still
        over all ``N`` components: unbiased for the same target. ``None`` (and
        ``N``, the same computation): every point.

    Returns
    -------
    ElboDecomposition
        The terms (0-d, dtype and device of ``mu``), averaged over the
        ``S N`` (or ``S num_queries``) samples; ``prior_dependence`` is 0.
        Not differentiable (torch inputs are detached). Dask arrays in: 0-d
        dask arrays of one lazy graph of blocks (:doc:`/dask`); compute the
        four together, ``dask.compute(terms)``.

    Raises
    ------
    ValueError
        ``mu``/``logvar`` not of one ``(N, D)`` shape, a prior that does not
        broadcast, ``num_samples < 1``, ``chunk_size < 1`` or ``num_queries``
        outside ``1 .. N``.

    Notes
    -----
    With :math:`q(z) = \frac1N \sum_n q(z|x_n)` over all ``N`` points,

    .. math::

        \log q(z) = \operatorname{logsumexp}_n \log q(z|x_n) - \log N,\qquad
        \log q(z_d) = \operatorname{logsumexp}_n \log q(z_d|x_n) - \log N,

    evaluated for each of the ``S N`` samples by a log-sum-exp over all ``N``
    components in ``(b, N)`` tiles: memory :math:`O(bN + SND)`, time
    :math:`O(S N^2 D)`. The only randomness is the Monte Carlo over ``z``.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import dataset_decomposition
    >>> mu = np.linspace(-2, 2, 200)[:, None] * np.ones((1, 2))
    >>> terms = dataset_decomposition(mu, np.full((200, 2), -3.0), num_samples=2)
    >>> bool(terms.total_correlation > 0.5)  # both coordinates copy one code
    True
    """
    xp, (mu, logvar, prior_mu, prior_logvar) = resolve(
        {"mu": mu, "logvar": logvar, "prior_mu": prior_mu, "prior_logvar": prior_logvar}
    )
    if is_dask_namespace(xp):  # a lazy graph of blocks, not of cache tiles
        from ._dask import dask_decomposition

        return dask_decomposition(
            mu, logvar, prior_mu, prior_logvar, num_samples=num_samples, seed=seed,
            chunk_size=chunk_size, progress=progress, num_queries=num_queries, xp=xp,
        )  # fmt: skip
    n, d = check_encodings(mu, logvar)
    check_prior((n, d), prior_mu, prior_logvar)
    samples = check_index("num_samples", num_samples, low=1)
    if chunk_size is not None and operator.index(chunk_size) < 1:
        msg = f"`chunk_size` must be a positive integer or None, got {chunk_size}"
        raise ValueError(msg)
    queries = check_num_queries(num_queries, n)
    rows = samples * (n if queries is None else queries)
    report, bar = progress_reporter(progress, rows, desc="dataset_decomposition", unit="rows")
    if is_torch_namespace(xp):
        mu, logvar = mu.detach(), logvar.detach()
        prior_mu, prior_logvar = prior_mu.detach(), prior_logvar.detach()
    drawn = sample_queries(mu, logvar, num_samples=samples, num_queries=queries, seed=seed, xp=xp)
    weights = LogWeights(-math.log(n))
    try:
        lq, lqd, _ = _tiles.forward(
            drawn.z, mu, logvar, weights, xp=xp, rows=chunk_size, progress=report
        )
    finally:
        if bar is not None:
            bar.close()
    log_qzx = xp.sum(log_density(drawn.z, drawn.mu, drawn.logvar, xp=xp), axis=-1)
    # The prior may be per point ((N, D) or (N, 1)): take it at each row's owner.
    owner = xp.asarray(drawn.owner, device=device(mu))

    def at_owners(x: Array) -> Array:
        return xp.take(xp.broadcast_to(x, (n, d)), owner, axis=0)

    log_pz = log_density(drawn.z, at_owners(prior_mu), at_owners(prior_logvar), xp=xp)
    log_pz = xp.sum(log_pz, axis=-1)
    return decompose(log_qzx, log_pz, lq, lqd, xp=xp)
