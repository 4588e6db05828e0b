r""":func:`dataset_decomposition` on dask arrays: one lazy graph of blocks.

The ``(M, N)`` pairs of query rows and mixture components are cut into blocks
of query rows times blocks of components (the row chunks of ``mu``). Each
block is one task running the engine of a NumPy call (:func:`_tiles.forward`:
the fused kernels for large float blocks where torch is installed, NumPy's
tiles otherwise) on its NumPy chunks, which returns per-row partial log-sums

.. math::

    p^{(b)}_i = \log \tfrac1N \sum_{j \in b} e^{J_{ij}}, \qquad
    p^{(b)}_{id} = \log \tfrac1N \sum_{j \in b} e^{L_{ijd}},

packed as one ``(m, 1, D + 1)`` chunk; one task per query block combines its
``B`` partials by a max-shifted log-sum-exp
(:math:`\log q(z_i) = \operatorname{logsumexp}_b p^{(b)}_i`). The graph has
``A B`` block tasks (``A`` query blocks, ``B`` component blocks), and ``O(A)``
tasks for the combination, the samples and the means: not one task per cache
tile.

The noise is drawn on a worker by one task that repeats the draw of
:func:`sample_queries` from ``seed`` (so the graph carries no ``N x D`` data
and the samples are those of the NumPy path); the query points are drawn on
the client from the same generator, to index ``mu``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from .._gaussian import log_density
from .._lib._compat import array_namespace
from .._lib._helpers import Array, Namespace, check_encodings, check_index
from . import _tiles
from ._dataset import check_num_queries, query_points
from ._decomposition import ElboDecomposition, check_prior, decompose
from ._weights import LogWeights

__all__ = ["MAX_BLOCK_ROWS", "MIN_BLOCK_ROWS", "dask_decomposition"]

MIN_BLOCK_ROWS = 2048
"""Fewest rows per block: finer row chunks of ``mu`` are merged up to this.

A ``(2048, 2048)`` block of a 10-dimensional latent is 4e7 densities (tens of
milliseconds), well above the scheduler's per-task overhead; it also bounds the
graph at ``(N / 2048)^2`` block tasks whatever the input chunks.
"""

MAX_BLOCK_ROWS = 8192
"""Most rows per block: coarser row chunks of ``mu`` are split down to this.

Chunks sized for memory (dask's ``"auto"``: 128 MiB, the whole of a
``(100000, 10)`` float64 array) are far too coarse for work that grows as the
square of the rows: an ``(8192, 8192)`` block of a 10-dimensional latent is
about a second of one core.
"""


def _check(
    mu: Array,
    logvar: Array,
    prior_mu: Array,
    prior_logvar: Array,
    *,
    num_samples: object,
    chunk_size: int | None,
    progress: object,
    num_queries: object,
) -> tuple[int, int, int, int | None]:
    """The metadata checks of :func:`dataset_decomposition`, and those dask adds."""
    if progress is not None and progress is not False:
        msg = (
            "`progress` is not supported with dask arrays (the work runs in the "
            "dask scheduler: use its progress bar or dashboard), got "
            f"{progress!r}"
        )
        raise ValueError(msg)
    for name, value in (("mu", mu), ("logvar", logvar)):
        if any(math.isnan(s) for s in value.shape):
            msg = (
                f"`{name}` must have known chunk sizes with dask, got shape "
                f"{tuple(value.shape)} (call `{name}.compute_chunk_sizes()` first)"
            )
            raise ValueError(msg)
    n, d = check_encodings(mu, logvar)
    check_prior((n, d), prior_mu, prior_logvar)
    samples = check_index("num_samples", num_samples, low=1)
    if chunk_size is not None and operator.index(chunk_size) < 1:
        msg = f"`chunk_size` must be a positive integer or None, got {chunk_size}"
        raise ValueError(msg)
    return n, d, samples, check_num_queries(num_queries, n)


def _block_rows(chunks: tuple[int, ...]) -> int | None:
    """Rows of uniform blocks for the row chunks ``chunks``, ``None`` to keep them."""
    if all(c >= MIN_BLOCK_ROWS for c in chunks[:-1]) and max(chunks) <= MAX_BLOCK_ROWS:
        return None
    return min(max(*chunks, MIN_BLOCK_ROWS), MAX_BLOCK_ROWS)


def _noise(seed: int, n: int, num_queries: int | None, num_samples: int, d: int) -> np.ndarray:
    """The ``(S M, D)`` float64 noise of :func:`sample_queries` for ``seed``, sample-major."""
    rng = np.random.default_rng(seed)
    points = query_points(n, num_queries, rng)
    return np.reshape(rng.standard_normal((num_samples, points.shape[0], d)), (-1, d))


def _block_log_sums(z: Array, mu: Array, logvar: Array, *, log_n: float, rows: int | None) -> Array:
    """``(m, 1, D + 1)`` partial ``[log q(z_i), log q(z_id)]`` of one block (one task)."""
    xp = array_namespace(z, mu)
    m, d = (int(s) for s in z.shape)
    if m == 0 or mu.shape[0] == 0:  # an empty block: log of an empty sum
        return xp.full((m, 1, d + 1), -math.inf, dtype=z.dtype)
    with np.errstate(all="ignore"):
        lq, lqd, _ = _tiles.forward(z, mu, logvar, LogWeights(-log_n), xp=xp, rows=rows)
    return xp.concat([lq[:, None], lqd], axis=1)[:, None, :]


def _logsumexp(x: Array, axis: int) -> Array:
    """Max-shifted log-sum-exp of partial log-sums over ``axis`` (removed).

    Where the maximum is not finite (every partial ``-inf``, a ``+inf``, a NaN)
    the result is that maximum, as in the tile engine's own log-sum-exp.
    """
    xp = array_namespace(x)
    with np.errstate(all="ignore"):
        top = xp.max(x, axis=axis, keepdims=True)
        finite = xp.isfinite(top)
        shift = xp.where(finite, top, xp.zeros_like(top))
        out = xp.log(xp.sum(xp.exp(x - shift), axis=axis, keepdims=True)) + shift
        out = xp.where(finite, out, top)
    return xp.squeeze(out, axis=axis)


def _row_terms(z: Array, mu: Array, logvar: Array, prior_mu: Array, prior_logvar: Array) -> Array:
    """``(m, 2)`` per-row ``[log q(z|x), log p(z)]`` of one query block (one task)."""
    xp = array_namespace(z, mu)
    with np.errstate(all="ignore"):
        log_qzx = xp.sum(log_density(z, mu, logvar, xp=xp), axis=-1)
        log_pz = xp.sum(log_density(z, prior_mu, prior_logvar, xp=xp), axis=-1)
    return xp.stack([log_qzx, log_pz], axis=1)


def dask_decomposition(
    mu: Array,
    logvar: Array,
    prior_mu: Array,
    prior_logvar: Array,
    *,
    num_samples: int,
    seed: int,
    chunk_size: int | None,
    progress: bool | Callable[[int, int], Any] | None,
    num_queries: int | None,
    xp: Namespace,
) -> ElboDecomposition:
    """:func:`dataset_decomposition` for dask arrays: lazy, nothing is computed here.

    Blocks follow the row chunks of ``mu``, made uniform between
    :data:`MIN_BLOCK_ROWS` and :data:`MAX_BLOCK_ROWS` rows where they are not
    (and one chunk along ``D``); ``chunk_size`` is the rows of the
    cache tiles inside each block, as for NumPy. Returns 0-d dask arrays.
    """
    import dask
    import dask.array as da

    n, d, samples, queries = _check(
        mu,
        logvar,
        prior_mu,
        prior_logvar,
        num_samples=num_samples,
        chunk_size=chunk_size,
        progress=progress,
        num_queries=num_queries,
    )
    dtype = mu.dtype
    rows = _block_rows(mu.chunks[0])
    mu = mu.rechunk({0: rows or mu.chunks[0], 1: -1})
    logvar = logvar.rechunk(mu.chunks)
    block = max(mu.chunks[0])

    # The query rows, sample-major as in sample_queries: (S M, D) in blocks of `block` rows.
    points = query_points(n, queries, np.random.default_rng(seed))
    subset = points.shape[0] != n
    m = samples * points.shape[0]

    def at_queries(x: Array) -> Array:
        """``x`` (``(N, D)``) at each query row's owner, in query blocks."""
        if subset:
            x = x[points]
        if samples > 1:
            x = da.concatenate([x] * samples, axis=0)
        return x.rechunk({0: block})

    mu_q, logvar_q = at_queries(mu), at_queries(logvar)
    noise = dask.delayed(_noise, pure=True)(seed, n, queries, samples, d)
    eps = da.from_delayed(noise, shape=(m, d), dtype=np.float64).astype(dtype)
    z = mu_q + da.exp(0.5 * logvar_q) * eps.rechunk(mu_q.chunks)

    def prior_at_queries(x: Array) -> Array:
        if x.ndim == 2 and x.shape[0] == n and n > 1:  # one prior per point
            return at_queries(x.rechunk({0: block, 1: -1}))
        return da.broadcast_to(x, (m, d), chunks=z.chunks)

    row_terms = da.map_blocks(
        _row_terms,
        z,
        mu_q,
        logvar_q,
        prior_at_queries(prior_mu),
        prior_at_queries(prior_logvar),
        chunks=(z.chunks[0], (2,)),
        token="dataset_decomposition-rows",
        dtype=dtype,
        meta=np.empty((0, 0), dtype=dtype),
    )
    parts = da.blockwise(
        _block_log_sums,
        "ijk",
        z,
        "il",
        mu,
        "jl",
        logvar,
        "jl",
        new_axes={"k": d + 1},
        adjust_chunks={"j": 1},
        concatenate=True,
        align_arrays=False,  # aligned already; unifying would warn of the A x B blocks
        token="dataset_decomposition-blocks",
        dtype=dtype,
        meta=np.empty((0, 0, 0), dtype=dtype),
        log_n=math.log(n),
        rows=chunk_size,
    )
    # One log-sum-exp per query block over its B partials (B is at most N / 2048).
    log_sums = da.blockwise(
        _logsumexp,
        "ik",
        parts,
        "ijk",
        concatenate=True,
        token="dataset_decomposition-logsumexp",
        dtype=dtype,
        meta=np.empty((0, 0), dtype=dtype),
        axis=1,
    )
    return decompose(row_terms[:, 0], row_terms[:, 1], log_sums[:, 0], log_sums[:, 1:], xp=xp)
