"""Array-API core of the aggregate-posterior estimators: tiled forward and backward.

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

from ._lib._compat import device, is_torch_namespace
from ._lib._helpers import Array, Namespace, logsumexp

__all__ = ["LogWeights", "backward", "forward", "tile_shape"]

_TILE_ELEMENTS = 1 << 17
"""Elements of one ``(k, b, N)`` work tile (512 KiB in float32: stays in cache)."""

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class LogWeights(NamedTuple):
    """Log mixture weights ``log w_ij`` (Python floats, computed in float64)."""

    log_other: float
    log_own: float | None = None
    log_next: float | None = None

    @property
    def uniform(self) -> bool:
        return self.log_own is None and self.log_next is None


def tile_shape(m: int, n: int, d: int, rows: int | None = None) -> tuple[int, int]:
    """Rows ``b`` and latent dimensions ``k`` of one work tile."""
    if rows is None:
        rows = max(1, min(m, _TILE_ELEMENTS // max(n, 1)))
    rows = max(1, min(m, rows))
    dims = max(1, min(d, _TILE_ELEMENTS // (rows * max(n, 1))))
    return rows, dims


def _lse_last(x: Array, *, xp: Namespace) -> Array:
    """Log-sum-exp over the last axis."""
    if is_torch_namespace(xp):
        import torch

        return torch.logsumexp(x, dim=-1)
    return logsumexp(x, axis=-1, xp=xp)


def _log_weight_tile(
    weights: LogWeights, i0: int, i1: int, n: int, *, dtype: Any, dev: Any, xp: Namespace
) -> Array | None:
    """``(b, N)`` log weights of rows ``i0:i1``, or ``None`` when uniform."""
    if weights.uniform:
        return None

    def const(v: float) -> Array:
        return xp.asarray(v, dtype=dtype, device=dev)

    rows = xp.arange(i0, i1, dtype=xp.int64, device=dev)[:, None]
    cols = xp.arange(0, n, dtype=xp.int64, device=dev)[None, :]
    tile = xp.broadcast_to(const(weights.log_other), (i1 - i0, n))
    if weights.log_next is not None:
        tile = xp.where(cols == (rows + 1) % n, const(weights.log_next), tile)
    if weights.log_own is not None:
        tile = xp.where(cols == rows, const(weights.log_own), tile)
    return tile


class _Components(NamedTuple):
    """Per-component terms, transposed to ``(D, N)`` for the tiles."""

    mu_t: Array  # mu_jd
    half_prec_t: Array  # exp(-v_jd) / 2
    norm_t: Array  # -(v_jd + log 2 pi) / 2


def _components(mu: Array, logvar: Array, *, xp: Namespace) -> _Components:
    mu_t = xp.permute_dims(mu, (1, 0))
    lv_t = xp.permute_dims(logvar, (1, 0))
    return _Components(mu_t, 0.5 * xp.exp(-lv_t), -0.5 * lv_t - _HALF_LOG_2PI)


def forward(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    *,
    xp: Namespace,
    rows: int | None = None,
    keep_joint: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Array, Array, Array | None]:
    """Estimates ``(log q(z_i), log q(z_id), J + log w)`` in bounded memory.

    Returns ``l`` of shape ``(M,)``, ``l_d`` of shape ``(M, D)`` and, with
    ``keep_joint``, the ``(M, N)`` matrix ``J_ij + log w_ij`` (for the backward
    pass; otherwise ``None``).
    """
    m, d = z.shape
    n = mu.shape[0]
    dtype, dev = z.dtype, device(z)
    comp = _components(mu, logvar, xp=xp)
    z_t = xp.permute_dims(z, (1, 0))
    b, k = tile_shape(m, n, d, rows)
    joint_rows: list[Array] = []
    log_q: list[Array] = []
    log_qd: list[Array] = []
    for i0 in range(0, m, b):
        i1 = min(i0 + b, m)
        logw = _log_weight_tile(weights, i0, i1, n, dtype=dtype, dev=dev, xp=xp)
        joint = xp.zeros((i1 - i0, n), dtype=dtype, device=dev)
        marg: list[Array] = []
        for d0 in range(0, d, k):
            d1 = min(d0 + k, d)
            # L_ijd = -(z_id - mu_jd)^2 exp(-v_jd) / 2 - (v_jd + log 2 pi) / 2
            diff = z_t[d0:d1, i0:i1, None] - comp.mu_t[d0:d1, None, :]
            dens = comp.norm_t[d0:d1, None, :] - (diff * diff) * comp.half_prec_t[d0:d1, None, :]
            joint = joint + (dens[0, ...] if d1 - d0 == 1 else xp.sum(dens, axis=0))
            if logw is not None:
                dens = dens + logw
            marg.append(_lse_last(dens, xp=xp))
        if logw is not None:
            joint = joint + logw
        log_q.append(_lse_last(joint, xp=xp))
        log_qd.append(xp.concat(marg, axis=0))
        if keep_joint:
            joint_rows.append(joint)
        if progress is not None:
            progress(i1, m)
    lq = xp.concat(log_q, axis=0)
    lqd = xp.permute_dims(xp.concat(log_qd, axis=1), (1, 0))
    if weights.uniform:
        lq = lq + weights.log_other
        lqd = lqd + weights.log_other
    full_joint = None
    if keep_joint:
        full_joint = xp.concat(joint_rows, axis=0)
        if weights.uniform:
            full_joint = full_joint + weights.log_other
    return lq, lqd, full_joint


def backward(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    log_q: Array,
    log_qd: Array,
    joint: Array,
    grad_q: Array,
    grad_qd: Array,
    *,
    xp: Namespace,
    rows: int | None = None,
) -> tuple[Array, Array, Array]:
    """Vector-Jacobian product of :func:`forward` with respect to ``(z, mu, logvar)``.

    ``joint`` is the ``(M, N)`` matrix returned by ``forward(..., keep_joint=True)``;
    ``grad_q`` ``(M,)`` and ``grad_qd`` ``(M, D)`` are the upstream gradients.
    With ``W_ijd = grad_q_i P_ij + grad_qd_id P_ijd`` (softmax weights ``P``) and
    ``r = z_id - mu_jd``, ``s = exp(-v_jd)``:

    * ``dz_id = -sum_j W_ijd r s``,
    * ``dmu_jd = sum_i W_ijd r s``,
    * ``dv_jd = sum_i W_ijd (r^2 s - 1) / 2``.
    """
    m, d = z.shape
    n = mu.shape[0]
    dtype, dev = z.dtype, device(z)
    comp = _components(mu, logvar, xp=xp)
    z_t = xp.permute_dims(z, (1, 0))
    lqd_t = xp.permute_dims(log_qd, (1, 0))
    gqd_t = xp.permute_dims(grad_qd, (1, 0))
    # Joint softmax weights times upstream gradient: an (M, N) matrix, O(M N).
    joint_weight = grad_q[:, None] * xp.exp(joint - log_q[:, None])
    b, k = tile_shape(m, n, d, rows)
    log_other = weights.log_other if weights.uniform else 0.0
    logw_all = _log_weight_tile(weights, 0, m, n, dtype=dtype, dev=dev, xp=xp)
    grad_z_parts: list[Array] = []
    grad_mu_parts: list[Array] = []
    grad_lv_parts: list[Array] = []
    for d0 in range(0, d, k):
        d1 = min(d0 + k, d)
        mu_k = comp.mu_t[d0:d1, None, :]
        hp_k = comp.half_prec_t[d0:d1, None, :]
        nrm_k = comp.norm_t[d0:d1, None, :]
        if log_other != 0.0:
            nrm_k = nrm_k + log_other
        gz_rows: list[Array] = []
        gmu = xp.zeros((d1 - d0, n), dtype=dtype, device=dev)
        glv = xp.zeros((d1 - d0, n), dtype=dtype, device=dev)
        for i0 in range(0, m, b):
            i1 = min(i0 + b, m)
            diff = z_t[d0:d1, i0:i1, None] - mu_k
            dens = nrm_k - (diff * diff) * hp_k
            if logw_all is not None:
                dens = dens + logw_all[i0:i1, :]
            soft = xp.exp(dens - lqd_t[d0:d1, i0:i1, None]) * gqd_t[d0:d1, i0:i1, None]
            w = soft + joint_weight[i0:i1, :]
            wrs = (w * diff) * (2.0 * hp_k)  # W r s
            gz_rows.append(-xp.sum(wrs, axis=-1))
            gmu = gmu + xp.sum(wrs, axis=1)
            glv = glv + 0.5 * (xp.sum(wrs * diff, axis=1) - xp.sum(w, axis=1))
        grad_z_parts.append(xp.concat(gz_rows, axis=1))
        grad_mu_parts.append(gmu)
        grad_lv_parts.append(glv)

    def untranspose(parts: list[Array]) -> Array:
        return xp.permute_dims(xp.concat(parts, axis=0), (1, 0))

    return untranspose(grad_z_parts), untranspose(grad_mu_parts), untranspose(grad_lv_parts)
