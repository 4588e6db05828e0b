r"""Fused ``torch.compile`` tiles of :func:`._groups.log_sums_by_group` (the MIG's engine).

One kernel per ``(rows, components)`` tile builds :math:`L_{ijd}`, shifts it
by the density bound, floors and exponentiates it exactly as the eager path
does, and sums it over the components, without writing the tile. Used where
:mod:`._compiled` serves (torch CPU tensors, NumPy float arrays through
zero-copy views where torch is installed, ``M N D >= 2**25`` or
``VAEMATH_COMPILE=1``) for the sums over all components of a call; the MIG
then takes every factor's groups as calls of their own (one per value: ``1/A``
of a pass for a factor with ``A`` values), which costs less than summing the
groups inside the tile (measured: about 0.9 ns a term per factor, against 2.7
for the whole sum-only tile, on the machine of the benchmark tables). Where
the components are many, the smallest factors' groups come free instead: the
components are sorted into blocks of equal codes of those factors, each block
summed by its own chunks (:func:`block_factors` picks them, so that padding
each block's last chunk costs at most ``1 / MIN_BLOCK_CHUNKS`` of a pass), and
each group is the sum of its blocks.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from .._lib._compat import torch_namespace, torch_view
from .._lib._helpers import Array
from ._compiled import call_kernel, density, fixed_plan, pad_cols, prepare, use_compiled

__all__ = ["MIN_BLOCK_CHUNKS", "block_factors", "fused_log_sums", "fused_sums_serve"]

MIN_BLOCK_CHUNKS = 8
"""Fewest component chunks per block, on average, of :func:`block_factors`' blocks."""


def _sum_tile(z_t, mu_t, nhp_t, normb_t, floor):
    """``(D, b)`` bound-shifted sums over the components of one tile."""
    return density(z_t, mu_t, nhp_t, normb_t).clamp(min=floor).exp().sum(-1)


def fused_sums_serve(z: Array, mu: Array) -> bool:
    """Whether :func:`fused_log_sums` serves these queries and components."""
    m, d = z.shape
    return use_compiled(z, m, mu.shape[0], d)


def block_factors(sizes: tuple[int, ...] | list[int], n: int, d: int) -> list[int]:
    """The factors (smallest first) whose groups :func:`fused_log_sums` sums in blocks.

    As many of the smallest factors as keep ``prod(sizes) * MIN_BLOCK_CHUNKS``
    chunks of components within ``n``; ``[]`` where not even one does.
    """
    chunk = fixed_plan(d)[1]
    chosen: list[int] = []
    blocks = 1
    for k in sorted(range(len(sizes)), key=lambda k: sizes[k]):
        if blocks * sizes[k] * MIN_BLOCK_CHUNKS * chunk > n:
            break
        blocks *= sizes[k]
        chosen.append(k)
    return chosen


def fused_log_sums(
    z: Array,
    mu: Array,
    logvar: Array,
    codes: np.ndarray | None,
    own_codes: np.ndarray | None,
    *,
    progress: Any,
) -> tuple[Array, Array | None] | None:
    r"""``(M, D)`` :math:`\log \sum_j \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}})`, or ``None``.

    With ``codes`` ``(N, F)`` and ``own_codes`` ``(M, F)`` (host integers), also
    the ``(F, M, D)`` log-sums over each query's own group of each factor, as
    :func:`._groups.log_sums_by_group` defines them: the components are sorted
    into blocks of equal codes, each block summed on its own. Torch tensors or
    NumPy arrays in, the same library out; ``None`` where the kernels do not
    serve (then the eager tiles run).
    """
    if not fused_sums_serve(z, mu):
        return None
    numpy_in = not isinstance(z, torch.Tensor)
    zt, mut, lvt = (torch_view(x) if numpy_in else x for x in (z, mu, logvar))
    m, d = zt.shape
    n = mut.shape[0]
    starts, groups = np.array([0, n]), None
    if codes is not None and own_codes is not None:  # components sorted into blocks
        block_codes, block = np.unique(codes, axis=0, return_inverse=True)
        order = np.argsort(block.reshape(-1), kind="stable")
        starts = np.searchsorted(block.reshape(-1)[order], np.arange(block_codes.shape[0] + 1))
        index = torch.from_numpy(order)
        mut, lvt = mut.index_select(0, index), lvt.index_select(0, index)
        code_of_block = torch.from_numpy(np.ascontiguousarray(block_codes.T))  # (F, P)
        own = torch.from_numpy(np.ascontiguousarray(own_codes.T))  # (F, M)
        groups = torch.zeros((codes.shape[1], d, m), dtype=zt.dtype)
    prep = prepare(mut.T.contiguous(), lvt.T.contiguous(), None, xp=torch_namespace())
    z_t = zt.T.contiguous()
    b, c = fixed_plan(d)  # one kernel shape for every group's call
    floor = torch.tensor(prep.floor, dtype=zt.dtype)
    chunks = [  # (block, tensors); contiguous: the kernel's guards check strides too
        (
            p,
            tuple(
                pad_cols(x[:, j0 : min(j0 + c, stop)], c, fill).contiguous()
                for x, fill in ((prep.mu_t, 0.0), (prep.nhp_t, -0.5), (prep.normb_t, -math.inf))
            ),
        )
        for p, (start, stop) in enumerate(itertools.pairwise(starts.tolist()))
        for j0 in range(start, stop, c)
    ]
    blocks = starts.shape[0] - 1
    sums = torch.zeros((d, m), dtype=zt.dtype)
    for i0 in range(0, m, b):
        i1 = min(i0 + b, m)
        zb = pad_cols(z_t[:, i0:i1], b, 0.0).contiguous()
        per_block = torch.zeros((blocks, d, b), dtype=zt.dtype)
        for p, (mu_c, nhp_c, nrm_c) in chunks:
            out = call_kernel(_sum_tile, zb, mu_c, nhp_c, nrm_c, floor)
            if out is None:
                return None
            per_block[p] += out
        sums[:, i0:i1] = per_block.sum(0)[:, : i1 - i0]
        if groups is not None:
            member = (code_of_block[:, :, None] == own[:, None, i0:i1]).to(zt.dtype)
            groups[:, :, i0:i1] = torch.einsum("pdw,fpw->fdw", per_block[:, :, : i1 - i0], member)
        if progress is not None:
            progress(i1, m)
    log_sums = (torch.log(sums) + prep.bound[:, None]).T
    log_groups = None
    if groups is not None:
        log_groups = (torch.log(groups) + prep.bound[None, :, None]).permute(0, 2, 1)
    if numpy_in:
        return log_sums.numpy(), None if log_groups is None else log_groups.numpy()
    return log_sums, log_groups
