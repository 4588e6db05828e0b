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
for the whole sum-only tile, on the machine of the benchmark tables).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._lib._compat import torch_namespace, torch_view
from .._lib._helpers import Array
from ._compiled import call_kernel, density, fixed_plan, pad_cols, prepare, use_compiled

__all__ = ["fused_log_sums", "fused_sums_serve"]


def _sum_tile(z_t, mu_t, nhp_t, normb_t, floor):
    """``(D, b)`` bound-shifted sums over the components of one tile."""
    return density(z_t, mu_t, nhp_t, normb_t).clamp(min=floor).exp().sum(-1)


def fused_sums_serve(z: Array, mu: Array) -> bool:
    """Whether :func:`fused_log_sums` serves these queries and components."""
    m, d = z.shape
    return use_compiled(z, m, mu.shape[0], d)


def fused_log_sums(z: Array, mu: Array, logvar: Array, *, progress: Any) -> Array | None:
    r"""``(M, D)`` :math:`\log \sum_j \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}})`, or ``None``.

    Torch tensors or NumPy arrays in, the same library out; ``None`` where the
    kernels do not serve (then the eager tiles run).
    """
    if not fused_sums_serve(z, mu):
        return None
    numpy_in = not isinstance(z, torch.Tensor)
    zt, mut, lvt = (torch_view(x) if numpy_in else x for x in (z, mu, logvar))
    m, d = zt.shape
    n = mut.shape[0]
    prep = prepare(mut.T.contiguous(), lvt.T.contiguous(), None, xp=torch_namespace())
    z_t = zt.T.contiguous()
    b, c = fixed_plan(d)  # one kernel shape for every group's call
    floor = torch.tensor(prep.floor, dtype=zt.dtype)
    sums = torch.zeros((d, m), dtype=zt.dtype)
    chunks = [  # contiguous: the kernel's guards check strides too
        tuple(
            pad_cols(x[:, j0 : j0 + c], c, fill).contiguous()
            for x, fill in ((prep.mu_t, 0.0), (prep.nhp_t, -0.5), (prep.normb_t, -math.inf))
        )
        for j0 in range(0, n, c)
    ]
    for i0 in range(0, m, b):
        i1 = min(i0 + b, m)
        zb = pad_cols(z_t[:, i0:i1], b, 0.0).contiguous()
        for mu_c, nhp_c, nrm_c in chunks:
            out = call_kernel(_sum_tile, zb, mu_c, nhp_c, nrm_c, floor)
            if out is None:
                return None
            sums[:, i0:i1] += out[:, : i1 - i0]
        if progress is not None:
            progress(i1, m)
    log_sums = (torch.log(sums) + prep.bound[:, None]).T
    return log_sums.numpy() if numpy_in else log_sums
