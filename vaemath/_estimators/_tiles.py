r"""Array-API core of the aggregate-posterior estimators: tiled forward and backward.

For query points ``z`` of shape ``(M, D)`` and mixture components
``N(mu[j], exp(logvar[j]))`` with ``mu``, ``logvar`` of shape ``(N, D)`` this module
computes

.. math::

    \ell_i = \log \sum_j w_{ij} \exp J_{ij}, \qquad
    \ell_{id} = \log \sum_j w_{ij} \exp L_{ijd}, \qquad
    J_{ij} = \sum_d L_{ijd},

with :math:`L_{ijd} = \log \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}})`, and the
vector-Jacobian product of :math:`(\ell, \ell_{\cdot d})` with respect to
``(z, mu, logvar)``.

Memory is bounded: the ``(M, N, D)`` array of log-densities is never formed.
Work proceeds in tiles of ``(k, b, N)`` elements (``k`` latent dimensions times
``b`` query rows, about ``_TILE_ELEMENTS`` in all, small enough to stay in cache).
The joint term :math:`J_{ij}` is accumulated from the same per-dimension tiles
(the direct formula, no cancellation), so it costs one addition per element
and an ``(b, N)`` buffer. The backward pass recomputes the tiles: the gradient
of a log-sum-exp is a softmax-weighted sum,

.. math::

    \frac{\partial \ell_{id}}{\partial L_{ijd}} = w_{ij} e^{L_{ijd} - \ell_{id}},
    \qquad
    \frac{\partial \ell_i}{\partial J_{ij}} = w_{ij} e^{J_{ij} - \ell_i},

and both are folded into one weight per ``(i, j, d)`` before the derivatives
of :math:`L_{ijd}` are applied, so nothing of size ``(M, N, D)`` is saved.

The weights :math:`w_{ij}` have the structure of every estimator vaemath uses:
one value everywhere (``log_other``), optionally another on the diagonal
``j == i`` (``log_own``, the query's own component) and on the cyclic
neighbour ``j == (i + 1) mod N`` (``log_next``, MSS).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from .._gaussian import neg_half_log_normaliser
from .._lib._compat import device, is_numpy_namespace, is_torch_namespace, torch_installed
from .._lib._helpers import Array, Namespace
from ._elementwise import contiguous, fused_requested, lse_last, softmax_inplace
from ._weights import LogWeights

__all__ = [
    "backward",
    "components",
    "density_tile",
    "fusable",
    "forward",
    "log_marginals",
    "tile_shape",
]

_TILE_ELEMENTS = 1 << 17
"""Elements of one ``(k, b, N)`` work tile (512 KiB in float32: stays in cache)."""


def tile_shape(m: int, n: int, d: int, rows: int | None = None) -> tuple[int, int]:
    """Rows ``b`` and latent dimensions ``k`` of one work tile."""
    if rows is None:
        # At least 8 rows: with N in the tens of thousands, fewer rows per tile
        # would make the per-call overhead of the array library dominate.
        rows = max(8, min(m, _TILE_ELEMENTS // max(n, 1)))
    rows = max(1, min(m, rows))
    dims = max(1, min(d, _TILE_ELEMENTS // (rows * max(n, 1))))
    return rows, dims


def _log_weight_tile(
    weights: LogWeights,
    i0: int,
    i1: int,
    n: int,
    *,
    dtype: Any,
    dev: Any,
    xp: Namespace,
    row_index: Array | None = None,
) -> Array | None:
    """``(b, N)`` log weights of rows ``i0:i1`` (of ``row_index``), ``None`` when uniform."""
    if weights.uniform:
        return None

    def const(v: float) -> Array:
        return xp.asarray(v, dtype=dtype, device=dev)

    rows = xp.arange(i0, i1, device=dev) if row_index is None else row_index[i0:i1]
    rows = rows[:, None]
    cols = xp.arange(0, n, device=dev)[None, :]
    tile = xp.broadcast_to(const(weights.log_other), (i1 - i0, n))
    if weights.log_next is not None:
        tile = xp.where(cols == (rows + 1) % n, const(weights.log_next), tile)
    if weights.log_own is not None:
        tile = xp.where(cols == rows, const(weights.log_own), tile)
    return tile


class _Components(NamedTuple):
    """Per-component terms, transposed to row-major ``(D, N)`` for the tiles."""

    mu_t: Array  # mu_jd
    neg_half_prec_t: Array  # -exp(-v_jd) / 2
    norm_t: Array  # -(v_jd + log 2 pi) / 2 (+ a uniform log weight), as in log_density


def components(mu: Array, logvar: Array, shift: float, *, xp: Namespace) -> _Components:
    mu_t = contiguous(xp.permute_dims(mu, (1, 0)), xp=xp)
    lv_t = contiguous(xp.permute_dims(logvar, (1, 0)), xp=xp)
    norm_t = neg_half_log_normaliser(lv_t, xp=xp)
    if shift:
        norm_t = norm_t + shift
    return _Components(mu_t, -0.5 * xp.exp(-lv_t), norm_t)


def _iadd(x: Array, y: Array) -> Array:
    x += y
    return x


def density_tile(
    z_t: Array, comp: _Components, dims: slice, comps: slice, *, functional: bool = False
) -> Array:
    """``(k, b, n)`` tile of L_ijd for latent dimensions ``dims`` and components ``comps``.

    L_ijd = -(z_id - mu_jd)^2 exp(-v_jd) / 2 + norm_jd, with norm_jd =
    -(v_jd + log 2 pi) / 2 (possibly shifted), built in place (``functional``:
    out of place, for autodiff transforms); ``z_t`` is the ``(k, b)`` slice of
    the transposed queries.
    """
    dens = z_t[:, :, None] - comp.mu_t[dims, None, comps]
    if functional:
        return (
            dens * dens * comp.neg_half_prec_t[dims, None, comps] + comp.norm_t[dims, None, comps]
        )
    dens *= dens
    dens *= comp.neg_half_prec_t[dims, None, comps]
    dens += comp.norm_t[dims, None, comps]
    return dens


def forward(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    *,
    xp: Namespace,
    rows: int | None = None,
    keep_joint: bool = False,
    with_joint: bool = True,
    with_marginals: bool = True,
    column_log_weights: Array | None = None,
    progress: Callable[[int, int], None] | None = None,
    functional: bool = False,
) -> tuple[Array, Array, Array | None]:
    """Estimates ``(log q(z_i), log q(z_id), J + log w)`` in bounded memory.

    Returns ``l`` of shape ``(M,)``, ``l_d`` of shape ``(M, D)`` and, with
    ``keep_joint``, the ``(M, N)`` matrix ``J_ij + log w_ij`` (for the backward
    pass; otherwise ``None``). ``with_joint=False`` skips the joint term and
    ``with_marginals=False`` the per-dimension ones (each is then ``None``).
    ``column_log_weights`` ``(N,)``: per-component log weights ``log c_j`` added
    to every ``log w_ij`` (a mixture with weights ``c``, e.g. a mixture prior).
    ``functional``: no in-place operation (slower; for torch forward-mode AD,
    ``torch.func`` transforms and double backward, which differentiate the
    operations themselves).

    Large problems on torch CPU tensors, and on NumPy arrays where torch is
    installed, take the fused kernels of :mod:`._compiled` (the same values to
    rounding); everything else the generic tiles below.
    """
    if keep_joint and not with_joint:
        msg = "keep_joint needs with_joint"
        raise ValueError(msg)
    fused = None
    if not functional and rows is None and fusable(z, mu, xp=xp):
        from ._compiled import fused_forward, fused_forward_numpy  # imports torch

        run = fused_forward if is_torch_namespace(xp) else fused_forward_numpy
        fused = run(
            z, mu, logvar, weights, with_joint=with_joint, with_marginals=with_marginals,
            keep_joint=keep_joint, column_log_weights=column_log_weights, progress=progress,
        )  # fmt: skip
    if fused is None:
        return _generic_forward(
            z, mu, logvar, weights, xp=xp, rows=rows, keep_joint=keep_joint,
            with_joint=with_joint, with_marginals=with_marginals,
            column_log_weights=column_log_weights, progress=progress, functional=functional,
        )  # fmt: skip
    lq, lqd, joint, redo = fused
    if redo is not None and lqd is not None:  # rows far below the bound: the exact max-shifted path
        _, exact, _ = _generic_forward(
            z[redo, :], mu, logvar, weights, xp=xp, with_joint=False,
            column_log_weights=column_log_weights, row_index=redo,
        )  # fmt: skip
        lqd[redo, :] = exact - weights.log_other
    shift = weights.log_other
    lq = None if lq is None else lq + shift
    lqd = None if lqd is None else lqd + shift
    if joint is not None:
        joint = joint + shift
    return lq, lqd, joint


def fusable(z: Array, mu: Array, *, xp: Namespace) -> bool:
    """Whether :mod:`._compiled` may serve: torch tensors; large NumPy float arrays with torch."""
    if is_torch_namespace(xp):
        return True
    if not is_numpy_namespace(xp) or str(z.dtype) not in {"float32", "float64"}:
        return False
    m, d = z.shape
    return fused_requested(m * mu.shape[0] * d) and torch_installed()


def _generic_forward(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    *,
    xp: Namespace,
    rows: int | None = None,
    keep_joint: bool = False,
    with_joint: bool = True,
    with_marginals: bool = True,
    column_log_weights: Array | None = None,
    progress: Callable[[int, int], None] | None = None,
    functional: bool = False,
    row_index: Array | None = None,
) -> tuple[Array, Array, Array | None]:
    """The generic (Array-API) path of :func:`forward`; ``row_index``: the rows' global indices."""
    m, d = z.shape
    n = mu.shape[0]
    dtype, dev = z.dtype, device(z)
    comp = components(mu, logvar, 0.0, xp=xp)
    z_t = contiguous(xp.permute_dims(z, (1, 0)), xp=xp)
    b, k = tile_shape(m, n, d, rows)
    joint_rows: list[Array] = []
    log_q: list[Array] = []
    log_qd: list[Array] = []
    for i0 in range(0, m, b):
        i1 = min(i0 + b, m)
        logw = _log_weight_tile(
            weights, i0, i1, n, dtype=dtype, dev=dev, xp=xp, row_index=row_index
        )
        if column_log_weights is not None:
            logw = column_log_weights[None, :] if logw is None else logw + column_log_weights
        joint = xp.zeros((i1 - i0, n), dtype=dtype, device=dev) if with_joint else None
        marg: list[Array] = []
        for d0 in range(0, d, k):
            d1 = min(d0 + k, d)
            dens = density_tile(
                z_t[d0:d1, i0:i1], comp, slice(d0, d1), slice(0, n), functional=functional
            )
            if joint is not None:
                part = dens[0, ...] if d1 - d0 == 1 else xp.sum(dens, axis=0)
                joint = joint + part if functional else _iadd(joint, part)
            if with_marginals:
                if logw is not None:
                    dens = dens + logw if functional else _iadd(dens, logw)
                marg.append(lse_last(dens, xp=xp, functional=functional))
        if joint is not None:
            if logw is not None:
                joint = joint + logw if functional else _iadd(joint, logw)
            if keep_joint:
                joint_rows.append(joint)
                joint = xp.asarray(joint, copy=True)
            log_q.append(lse_last(joint, xp=xp, functional=functional))
        if with_marginals:
            log_qd.append(xp.concat(marg, axis=0))
        if progress is not None:
            progress(i1, m)
    lq = xp.concat(log_q, axis=0) if with_joint else None
    lqd = xp.permute_dims(xp.concat(log_qd, axis=1), (1, 0)) if with_marginals else None
    if weights.uniform:
        lq = None if lq is None else lq + weights.log_other
        lqd = None if lqd is None else lqd + weights.log_other
    full_joint = None
    if keep_joint:
        full_joint = xp.concat(joint_rows, axis=0)
        if weights.uniform:
            full_joint = full_joint + weights.log_other
    return lq, lqd, full_joint


def log_marginals(
    z: Array,
    mu: Array,
    logvar: Array,
    *,
    xp: Namespace,
    rows: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Array:
    r"""``(M, D)`` log-densities of every query under each one-dimensional marginal mixture.

    :math:`\log \frac1N \sum_j \mathcal N(z_{id}; \mu_{jd}, e^{v_{jd}})` over all
    ``N`` components, in the same bounded-memory tiles as :func:`forward` (no
    joint term).
    """
    weights = LogWeights(-math.log(mu.shape[0]))
    _, lqd, _ = forward(
        z, mu, logvar, weights, xp=xp, rows=rows, with_joint=False, progress=progress
    )
    return lqd


def backward(
    z: Array,
    mu: Array,
    logvar: Array,
    *,
    weights: LogWeights,
    log_q: Array,
    log_qd: Array | None,
    joint: Array,
    grad_q: Array,
    grad_qd: Array | None,
    xp: Namespace,
    column_log_weights: Array | None = None,
    rows: int | None = None,
) -> tuple[Array, Array, Array, Array]:
    """Vector-Jacobian product of :func:`forward` with respect to ``(z, mu, logvar, log c)``.

    ``joint`` is the ``(M, N)`` matrix returned by ``forward(..., keep_joint=True)``;
    ``grad_q`` ``(M,)`` and ``grad_qd`` ``(M, D)`` are the upstream gradients
    (``log_qd`` and ``grad_qd`` ``None`` when the forward pass had no
    marginals). With ``W_ijd = grad_q_i P_ij + grad_qd_id P_ijd`` (softmax
    weights ``P``) and ``r = z_id - mu_jd``, ``s = exp(-v_jd)``:

    * ``dz_id = -sum_j W_ijd r s``,
    * ``dmu_jd = sum_i W_ijd r s``,
    * ``dv_jd = sum_i W_ijd (r^2 s - 1) / 2``,
    * ``d log c_j = sum_i grad_q_i P_ij + sum_id grad_qd_id P_ijd`` (the fourth
      result; zeros without ``column_log_weights``).

    Torch CPU tensors of a large problem take the fused kernels of
    :mod:`._compiled` (same values to rounding).
    """
    m, d = z.shape
    n = mu.shape[0]
    dtype, dev = z.dtype, device(z)
    marginals = log_qd is not None and grad_qd is not None
    if is_torch_namespace(xp) and rows is None:
        from ._compiled import fused_backward  # imports torch: only for torch inputs

        fused = fused_backward(
            z, mu, logvar, weights, log_q, log_qd if marginals else None, joint, grad_q,
            grad_qd if marginals else None, column_log_weights, xp=xp,
        )  # fmt: skip
        if fused is not None:
            return fused
    comp = components(mu, logvar, weights.log_other if weights.uniform else 0.0, xp=xp)
    z_t = contiguous(xp.permute_dims(z, (1, 0)), xp=xp)
    # Joint softmax weights times upstream gradient: an (M, N) matrix, O(M N).
    joint_weight = grad_q[:, None] * softmax_inplace(joint - log_q[:, None], xp=xp)
    grad_c = xp.sum(joint_weight, axis=0)
    logw_all = _log_weight_tile(weights, 0, m, n, dtype=dtype, dev=dev, xp=xp)
    if column_log_weights is not None:
        logw_all = (
            xp.broadcast_to(column_log_weights[None, :], (m, n))  # a view, no (M, N) copy
            if logw_all is None
            else logw_all + column_log_weights
        )
    if marginals:
        lqd_t = contiguous(xp.permute_dims(log_qd, (1, 0)), xp=xp)
        gqd_t = contiguous(xp.permute_dims(grad_qd, (1, 0)), xp=xp)
    else:
        joint_col = grad_c  # sum_i W_ij, the same for every dimension
    b, k = tile_shape(m, n, d, rows)
    grad_z_parts: list[Array] = []
    grad_mu_parts: list[Array] = []
    grad_lv_parts: list[Array] = []
    for d0 in range(0, d, k):
        d1 = min(d0 + k, d)
        mu_k = comp.mu_t[d0:d1, None, :]
        nhp_k = comp.neg_half_prec_t[d0:d1, None, :]
        prec_k = -2.0 * nhp_k
        nrm_k = comp.norm_t[d0:d1, None, :]
        gz_rows: list[Array] = []
        gmu = xp.zeros((d1 - d0, n), dtype=dtype, device=dev)
        glv = xp.zeros((d1 - d0, n), dtype=dtype, device=dev)
        for i0 in range(0, m, b):
            i1 = min(i0 + b, m)
            diff = z_t[d0:d1, i0:i1, None] - mu_k  # r = z_id - mu_jd
            if marginals:
                w = diff * diff
                w *= nhp_k
                w += nrm_k
                if logw_all is not None:
                    w += logw_all[i0:i1, :]
                w -= lqd_t[d0:d1, i0:i1, None]
                w = softmax_inplace(w, xp=xp)  # softmax weights P_ijd
                w *= gqd_t[d0:d1, i0:i1, None]
                if column_log_weights is not None:
                    grad_c = grad_c + xp.sum(w, axis=(0, 1))
                w += joint_weight[i0:i1, :]  # W_ijd
                col = xp.sum(w, axis=1)
                w *= diff
            else:
                w = joint_weight[None, i0:i1, :] * diff  # W_ij r
                col = None
            w *= prec_k  # W r s
            gz_rows.append(-xp.sum(w, axis=-1))
            gmu += xp.sum(w, axis=1)
            w *= diff  # W r^2 s
            glv += 0.5 * (xp.sum(w, axis=1) - col) if col is not None else 0.5 * xp.sum(w, axis=1)
        if not marginals:
            glv -= 0.5 * joint_col[None, :]
        grad_z_parts.append(xp.concat(gz_rows, axis=1))
        grad_mu_parts.append(gmu)
        grad_lv_parts.append(glv)

    def untranspose(parts: list[Array]) -> Array:
        return xp.permute_dims(xp.concat(parts, axis=0), (1, 0))

    return (
        untranspose(grad_z_parts),
        untranspose(grad_mu_parts),
        untranspose(grad_lv_parts),
        grad_c,
    )
