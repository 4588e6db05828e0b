r"""Per-dimension mixture sums over all components and over groups of them (the MIG's engine).

The same tiles as :mod:`._tiles`, shifted by a density bound instead of a row
maximum, so that sums over any subset of the components are one matrix
product of the exponentiated tile with a 0/1 group indicator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .._lib._compat import device
from .._lib._helpers import Array, Namespace
from ._elementwise import contiguous, exp_inplace
from ._tiles import components, density_tile, fusable, tile_shape

__all__ = ["bound_margin", "fused_block_factors", "groups_in_tiles", "log_sums_by_group"]

_CHUNK = (1 << 17) // 16
"""Components per chunk of :func:`log_sums_by_group`."""


def bound_margin(dtype: Any, *, xp: Namespace) -> float:
    """How far below the bound a query's own log-density may lie for :func:`log_sums_by_group`.

    ``0.45 |log(smallest normal)|``: 39 in float32, 319 in float64. A sum that
    contains a term ``>= e^-margin`` is then far above what the ``exp`` floor of
    :func:`exp_inplace` can add (``N e^floor``), and cannot overflow.
    """
    return 0.45 * -math.log(float(xp.finfo(dtype).smallest_normal))


def groups_in_tiles(z: Array, mu: Array, *, xp: Namespace) -> bool:
    """Whether :func:`log_sums_by_group` should sum small groups in its shared tiles.

    ``True`` on the eager tiles (the indicator product costs little next to
    their ``exp``); ``False`` where the fused kernels serve the sums, which
    then cost less than any in-tile group sum: a caller does better asking for
    each group as a call of its own.
    """
    if not fusable(z, mu, xp=xp):
        return True
    from ._compiled_groups import fused_sums_serve  # imports torch

    return not fused_sums_serve(z, mu)


def fused_block_factors(z: Array, mu: Array, sizes: list[int], *, xp: Namespace) -> list[int]:
    """The factors whose groups the fused sums of :func:`log_sums_by_group` give.

    Where the fused kernels serve (:func:`groups_in_tiles` is ``False``), the
    smallest factors for which sorting the components into blocks of equal
    codes pads little (:func:`._compiled_groups.block_factors`); ``[]``
    elsewhere.
    """
    if not fusable(z, mu, xp=xp):
        return []
    from ._compiled_groups import block_factors, fused_sums_serve  # imports torch

    if not fused_sums_serve(z, mu):
        return []
    return block_factors(sizes, int(mu.shape[0]), int(z.shape[1]))


def log_sums_by_group(
    z: Array,
    mu: Array,
    logvar: Array,
    codes: np.ndarray | None,
    own_codes: np.ndarray | None,
    *,
    xp: Namespace,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Array, Array | None]:
    r"""Per-dimension log-sums over all components and over each query's own groups.

    .. math::

        s_{id} = \log \sum_j \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}}), \qquad
        c_{fid} = \log \sum_{j:\, a_{jf} = b_{if}} \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}}),

    ``a = codes`` the ``(N, F)`` integer factor values of the components and
    ``b = own_codes`` the ``(M, F)`` ones of the queries (host NumPy; ``None``:
    no groups, and ``c`` is ``None``). One exponential per ``(i, j, d)`` serves
    all of them: the terms are shifted by the bound
    :math:`U_d = \max_j -(v_{jd} + \log 2\pi)/2` instead of a per-row maximum,
    so sums over any subset of the components come from the same terms, and the
    component axis can be chunked without a running maximum. Returns ``s``
    ``(M, D)`` and ``c`` ``(F, M, D)``.

    Large problems on torch CPU tensors, and on NumPy arrays where torch is
    installed, take the fused kernels of :mod:`._compiled_groups`
    (:func:`groups_in_tiles` is then ``False``: the caller asks for the
    factors of :func:`fused_block_factors` here, summed in blocks of
    components, and for each other group as a call of its own); the eager
    tiles below sum the groups as one matrix product of each exponentiated tile
    with the 0/1 group indicator.

    Precondition (the caller checks it): every query's own component is in
    every group it selects and its log-density is within
    :func:`bound_margin` of :math:`U_d`, so no selected sum underflows.
    """
    if fusable(z, mu, xp=xp):
        from ._compiled_groups import fused_log_sums  # imports torch

        fused = fused_log_sums(z, mu, logvar, codes, own_codes, progress=progress)
        if fused is not None:
            return fused
    onehot, query_select = (
        (None, None) if codes is None or own_codes is None else _indicators(codes, own_codes, z, xp)
    )
    m, d = z.shape
    n = mu.shape[0]
    dtype, dev = z.dtype, device(z)
    comp = components(mu, logvar, 0.0, xp=xp)
    bound = xp.max(comp.norm_t, axis=1)
    comp = comp._replace(norm_t=comp.norm_t - bound[:, None])
    z_t = contiguous(xp.permute_dims(z, (1, 0)), xp=xp)
    chunk = min(n, _CHUNK)
    b, k = tile_shape(m, chunk, d)
    sums: list[Array] = []
    selected: list[Array] = []
    for i0 in range(0, m, b):
        i1 = min(i0 + b, m)
        for d0 in range(0, d, k):
            d1 = min(d0 + k, d)
            total = xp.zeros((d1 - d0, i1 - i0), dtype=dtype, device=dev)
            groups = None
            for j0 in range(0, n, chunk):
                j1 = min(j0 + chunk, n)
                tile = density_tile(z_t[d0:d1, i0:i1], comp, slice(d0, d1), slice(j0, j1))
                tile = exp_inplace(tile, xp=xp)
                total += xp.sum(tile, axis=-1)
                if onehot is not None:
                    flat = xp.reshape(tile, ((d1 - d0) * (i1 - i0), j1 - j0))
                    part = xp.reshape(flat @ onehot[j0:j1, :], (d1 - d0, i1 - i0, -1))
                    groups = part if groups is None else groups + part
            sums.append(xp.log(total) + bound[d0:d1, None])
            if groups is not None and query_select is not None:
                picked = xp.sum(groups[None, ...] * query_select[:, None, i0:i1, :], axis=-1)
                selected.append(xp.log(picked) + bound[None, d0:d1, None])
        if progress is not None:
            progress(i1, m)
    # pieces are (k, b) per (row tile, dim tile), in row-major tile order
    dim_tiles = -(-d // k)
    rows_out = [xp.concat(sums[t : t + dim_tiles], axis=0) for t in range(0, len(sums), dim_tiles)]
    log_sums = xp.permute_dims(xp.concat(rows_out, axis=1), (1, 0))
    if not selected:
        return log_sums, None
    sel_rows = [
        xp.concat(selected[t : t + dim_tiles], axis=1) for t in range(0, len(selected), dim_tiles)
    ]
    return log_sums, xp.permute_dims(xp.concat(sel_rows, axis=2), (0, 2, 1))


def _indicators(
    codes: np.ndarray, own_codes: np.ndarray, like: Array, xp: Namespace
) -> tuple[Array, Array]:
    """``(N, C)`` 0/1 group indicator of the components, ``(F, M, C)`` selection of the queries'."""
    sizes = codes.max(axis=0) + 1
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    n, m, f = codes.shape[0], own_codes.shape[0], codes.shape[1]
    onehot = np.zeros((n, offsets[-1]))
    pick = np.zeros((f, m, offsets[-1]))
    for k in range(f):
        onehot[np.arange(n), codes[:, k] + offsets[k]] = 1.0
        pick[k, np.arange(m), own_codes[:, k] + offsets[k]] = 1.0
    dtype, dev = like.dtype, device(like)
    return xp.asarray(onehot, dtype=dtype, device=dev), xp.asarray(pick, dtype=dtype, device=dev)
