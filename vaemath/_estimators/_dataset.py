"""Exact full-dataset evaluation of the KL decomposition, streamed in tiles."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from .._gaussian import log_density
from .._lib._compat import device, is_torch_namespace
from .._lib._helpers import Array, check_encodings, check_index, numpy_quiet, resolve
from .._lib._progress import progress_reporter
from . import _tiles
from ._decomposition import ElboDecomposition, check_prior, decompose
from ._weights import LogWeights

__all__ = ["dataset_decomposition"]


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
        ``progress(done, total)`` after each tile of query rows.

    Returns
    -------
    ElboDecomposition
        The three terms (0-d, dtype and device of ``mu``), averaged over the
        ``S N`` samples. Not differentiable (torch inputs are detached).

    Raises
    ------
    ValueError
        ``mu``/``logvar`` not of one ``(N, D)`` shape, a prior that does not
        broadcast, ``num_samples < 1`` or ``chunk_size < 1``.

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
    n, d = check_encodings(mu, logvar)
    check_prior((n, d), prior_mu, prior_logvar)
    samples = check_index("num_samples", num_samples, low=1)
    if chunk_size is not None and operator.index(chunk_size) < 1:
        msg = f"`chunk_size` must be a positive integer or None, got {chunk_size}"
        raise ValueError(msg)
    report, bar = progress_reporter(
        progress, n * samples, desc="dataset_decomposition", unit="rows"
    )
    if is_torch_namespace(xp):
        mu, logvar = mu.detach(), logvar.detach()
        prior_mu, prior_logvar = prior_mu.detach(), prior_logvar.detach()

    rng = np.random.default_rng(seed)
    scale = xp.exp(0.5 * logvar)
    noise = [rng.standard_normal((n, d)) for _ in range(samples)]
    z = xp.concat(
        [mu + scale * xp.asarray(e, dtype=mu.dtype, device=device(mu)) for e in noise], axis=0
    )

    def repeat(x: Array) -> Array:
        x = xp.broadcast_to(x, (n, d))
        return xp.concat([x] * samples, axis=0) if samples > 1 else x

    weights = LogWeights(-math.log(n))
    try:
        lq, lqd, _ = _tiles.forward(z, mu, logvar, weights, xp=xp, rows=chunk_size, progress=report)
    finally:
        if bar is not None:
            bar.close()
    log_qzx = xp.sum(log_density(z, repeat(mu), repeat(logvar), xp=xp), axis=-1)
    log_pz = xp.sum(log_density(z, repeat(prior_mu), repeat(prior_logvar), xp=xp), axis=-1)
    return decompose(log_qzx, log_pz, lq, lqd, xp=xp)
