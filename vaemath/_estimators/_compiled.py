r"""Fused ``torch.compile`` tiles of the engine: torch on CPU, large problems.

The eager path (:mod:`._tiles`) runs every elementwise step
as its own pass over a cached tile; here one compiled kernel per tile builds
:math:`L_{ijd}`, exponentiates and reduces it without writing the
``(k, b, c)`` intermediate at all. The arithmetic is the eager paths' (the
same bound shift, floor and flush, the same own / next weights); results agree
to rounding and the tests compare them.

When it runs: torch CPU tensors, not under ``functional`` (autodiff
transforms), and ``M N D >= 2**25`` terms (below that, compiling costs more
than it saves). NumPy float32 / float64 arrays of that size take the same
kernels when torch is installed (:func:`fused_forward_numpy`: zero-copy torch
views in, NumPy arrays out; torch's intra-op threads, ``torch.set_num_threads``,
set the parallelism), because NumPy alone runs one thread and one pass over
the tile per elementwise step. ``VAEMATH_COMPILE=0`` turns it off, ``=1`` on for every size.
Each distinct tile shape compiles once per process (seconds; inductor caches
the kernels on disk for later processes). Tiles have a fixed shape (the last
row and component blocks are padded), so a workload compiles a handful of
kernels. If compiling fails (no C++ compiler, an unsupported platform), a
``RuntimeWarning`` says so once and the eager path computes the result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from .._gaussian import neg_half_log_normaliser
from .._lib._compat import torch_namespace, torch_view
from .._lib._helpers import Array, Namespace
from ._elementwise import exp_floor, fused_requested, softmax_cut
from ._groups import bound_margin
from ._weights import LogWeights

__all__ = [
    "call_kernel",
    "density",
    "fused_backward",
    "fused_forward",
    "fused_forward_numpy",
    "fixed_plan",
    "pad_cols",
    "prepare",
    "use_compiled",
]

_TILE_TERMS = 1 << 21
_CHUNK = 4096
_FAILED: list[str] = []
_KERNELS: dict[Callable[..., Any], Any] = {}


class _Prepared(NamedTuple):
    mu_t: Array  # (D, N) mu_jd
    nhp_t: Array  # (D, N) -exp(-v_jd) / 2
    normb_t: Array  # (D, N) -(v_jd + log 2 pi)/2 + log c_j - U_d
    bound: Array  # (D,) U_d
    joint_fix: Array  # (N,) sum_d U_d - (D - 1) log c_j: the joint's correction
    floor: float  # exp floor (log smallest normal + 7)
    tiny: float  # exp(-margin): smaller sums are recomputed exactly


def prepare(
    mu_t: Array, lv_t: Array, column_log_weights: Array | None, *, xp: Namespace
) -> _Prepared:
    d = mu_t.shape[0]
    norm_t = neg_half_log_normaliser(lv_t, xp=xp)
    if column_log_weights is not None:
        norm_t = norm_t + column_log_weights[None, :]
    bound = xp.max(norm_t, axis=1)
    # A non-finite bound (a NaN or inf parameter in that dimension) would poison
    # every row; 0 keeps the finite ones right, and the rows whose sum is not
    # finite are recomputed by the generic path.
    bound = xp.where(xp.isfinite(bound), bound, xp.zeros_like(bound))
    normb_t = norm_t - bound[:, None]
    joint_fix = xp.sum(bound) + xp.zeros_like(normb_t[0, :])
    if column_log_weights is not None and d > 1:
        joint_fix = joint_fix - (d - 1) * column_log_weights
    return _Prepared(
        mu_t,
        -0.5 * xp.exp(-lv_t),
        normb_t,
        bound,
        joint_fix,
        exp_floor(mu_t.dtype, xp=xp),
        math.exp(-bound_margin(mu_t.dtype, xp=xp)),
    )


def diagonal_deltas(weights: LogWeights) -> list[tuple[int, float]]:
    """``(offset, log w - log w_other)`` for the own (offset 0) and next (offset 1) components."""
    out = []
    if weights.log_own is not None:
        out.append((0, weights.log_own - weights.log_other))
    if weights.log_next is not None:
        out.append((1, weights.log_next - weights.log_other))
    return out


def use_compiled(z: Array, m: int, n: int, d: int) -> bool:
    """Whether the compiled tiles serve this problem (see the module docstring).

    ``z``: a torch tensor (on the CPU) or a NumPy array (taken through views).
    """
    if _FAILED or (isinstance(z, torch.Tensor) and z.device.type != "cpu"):
        return False
    return fused_requested(m * n * d)


def density(z_t, mu_t, nhp_t, normb_t):
    """``(D, b, c)`` ``(z - mu)^2 * nhp + norm`` (fused into its consumers by inductor)."""
    return torch.addcmul(
        normb_t[:, None, :], (z_t[:, :, None] - mu_t[:, None, :]).square(), nhp_t[:, None, :]
    )


def _fwd_tile(z_t, mu_t, nhp_t, normb_t, joint_fix, floor):  # noqa: PLR0917 - compiled, positional
    """``(joint log-sum-exp (b,), marginal sums (D, b), joint (b, c))`` of one tile."""
    dens = density(z_t, mu_t, nhp_t, normb_t)
    joint = dens.sum(0) + joint_fix[None, :]
    sums = dens.clamp(min=floor).exp().sum(-1)
    return _lse(joint, floor), sums, joint


def _fwd_diag_tile(z_t, mu_t, nhp_t, normb_t, joint_fix, diag, floor):  # noqa: PLR0917 - compiled, positional
    """:func:`_fwd_tile` with the ``(b, c)`` own / next log-weight deltas ``diag`` added."""
    dens = density(z_t, mu_t, nhp_t, normb_t)
    joint = dens.sum(0) + joint_fix[None, :] + diag
    sums = (dens + diag[None, :, :]).clamp(min=floor).exp().sum(-1)
    return _lse(joint, floor), sums, joint


def _fwd_joint_tile(z_t, mu_t, nhp_t, normb_t, joint_fix, diag, floor):  # noqa: PLR0917 - compiled, positional
    """The joint part of :func:`_fwd_diag_tile` alone."""
    joint = density(z_t, mu_t, nhp_t, normb_t).sum(0) + joint_fix[None, :] + diag
    return _lse(joint, floor), joint


def _lse(joint: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    top = joint.amax(-1, keepdim=True)
    finite = torch.isfinite(top)
    safe = torch.where(finite, top, torch.zeros_like(top))
    out = torch.log((joint - safe).clamp(min=floor).exp().sum(-1)) + safe[:, 0]
    return torch.where(finite[:, 0], out, top[:, 0])


def _bwd_tile(z_t, mu_t, nhp_t, lnorm_t, lqd_t, gqd_t, joint, lq, gq, diag, cut):  # noqa: PLR0917 - compiled, positional
    """``(dz (D, b), dmu, dlogvar (D, c), dlog c (c,))`` of one tile (``_tiles.backward``)."""
    flush = 1.5 * torch.exp(cut)
    pj = torch.exp((joint - lq[:, None]).clamp(min=cut))
    jw = gq[:, None] * torch.where(pj > flush, pj, torch.zeros_like(pj))  # (b, c)
    r = z_t[:, :, None] - mu_t[:, None, :]
    logp = torch.addcmul(lnorm_t[:, None, :], r.square(), nhp_t[:, None, :])
    logp = logp + diag[None, :, :] - lqd_t[:, :, None]
    p = torch.exp(logp.clamp(min=cut))
    p = torch.where(p > flush, p, torch.zeros_like(p)) * gqd_t[:, :, None]
    w = p + jw[None, :, :]
    wrs = w * r * (-2.0 * nhp_t[:, None, :])
    gz = -wrs.sum(-1)
    gmu = wrs.sum(1)
    glv = 0.5 * ((wrs * r).sum(1) - w.sum(1))
    gc = jw.sum(0) + p.sum((0, 1))
    return gz, gmu, glv, gc


def _bwd_joint_tile(z_t, mu_t, nhp_t, joint, lq, gq, cut):  # noqa: PLR0917 - compiled, positional
    """:func:`_bwd_tile` without marginals: the weight ``W_ij`` is the same for every ``d``."""
    flush = 1.5 * torch.exp(cut)
    pj = torch.exp((joint - lq[:, None]).clamp(min=cut))
    jw = gq[:, None] * torch.where(pj > flush, pj, torch.zeros_like(pj))
    r = z_t[:, :, None] - mu_t[:, None, :]
    wrs = jw[None, :, :] * r * (-2.0 * nhp_t[:, None, :])
    gz = -wrs.sum(-1)
    gmu = wrs.sum(1)
    col = jw.sum(0)
    glv = 0.5 * ((wrs * r).sum(1) - col[None, :])
    return gz, gmu, glv, col


def _kernel(fn: Callable[..., Any]) -> Any:
    if fn not in _KERNELS:
        _KERNELS[fn] = torch.compile(fn, dynamic=False, fullgraph=True)
    return _KERNELS[fn]


def call_kernel(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` compiled (once per function and tile shape).

    ``None`` (and one warning) if compiling fails.
    """
    if _FAILED:
        return None
    # detached: dynamo would otherwise inspect the autograd state of saved outputs
    args = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    try:
        with warnings.catch_warnings():
            # inductor's own imports warn about deprecated torch.jit APIs
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return _kernel(fn)(*args)
    except Exception as exc:
        _FAILED.append(repr(exc))
        warnings.warn(
            f"vaemath: torch.compile of the estimator tiles failed ({type(exc).__name__}: "
            f"{exc}); using the eager path (slower, same values). Set VAEMATH_COMPILE=0 "
            "to skip the attempt.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def _plan(m: int, n: int, d: int) -> tuple[int, int]:
    """``(b, c)``: rows and components of a tile; chunks split ``N`` evenly (little padding)."""
    c = -(-n // -(-n // _CHUNK))
    b = max(1, min(m, _TILE_TERMS // (c * d)))
    return b, c


def fixed_plan(d: int) -> tuple[int, int]:
    """``(b, c)`` from ``D`` alone: one kernel shape for the MIG's many group sizes (padded)."""
    return max(1, _TILE_TERMS // (_CHUNK * d)), _CHUNK


def pad_cols(x: torch.Tensor, width: int, value: float) -> torch.Tensor:
    if x.shape[-1] == width:
        return x
    pad = x.new_full((*x.shape[:-1], width - x.shape[-1]), value)
    return torch.cat([x, pad], dim=-1)


def _diag_tile(  # noqa: PLR0917 - private
    i0: int, b: int, j0: int, c: int, n: int, m: int, deltas: list[tuple[int, float]], dtype: Any
) -> torch.Tensor:
    """``(b, c)`` log-weight deltas at each row's own (offset 0) and next component."""
    tile = torch.zeros((b, c), dtype=dtype)
    i = torch.arange(i0, i0 + b)
    for offset, delta in deltas:
        col = (i + offset) % n - j0
        ok = (col >= 0) & (col < c) & (i < m)
        if offset == 0:
            ok &= i < n
        tile[torch.nonzero(ok)[:, 0], col[ok]] += delta
    return tile


def compiled_forward(
    z_t: torch.Tensor,
    prep: Any,
    deltas: list[tuple[int, float]],
    *,
    with_joint: bool,
    with_marginals: bool,
    keep_joint: bool,
    progress: Any,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None] | None:
    """``(log q, (D, M) marginal sums, joint)`` from fused tiles, or ``None`` to use eager.

    ``prep`` is :func:`prepare`'s; the results are before the uniform weight
    (:func:`._tiles.forward` adds it).
    """
    d, m = z_t.shape
    n = prep.mu_t.shape[1]
    dtype = z_t.dtype
    b, c = _plan(m, n, d)
    floor = torch.tensor(prep.floor, dtype=dtype)
    tile = (_fwd_diag_tile if deltas else _fwd_tile) if with_marginals else _fwd_joint_tile
    lq = torch.empty((m,), dtype=dtype) if with_joint else None
    sums = torch.zeros((d, m), dtype=dtype) if with_marginals else None
    joint_out = torch.empty((m, n), dtype=dtype) if keep_joint else None
    chunks = []
    for j0 in range(0, n, c):
        j1 = min(j0 + c, n)
        chunks.append((
            j0, j1,
            pad_cols(prep.mu_t[:, j0:j1], c, 0.0),
            pad_cols(prep.nhp_t[:, j0:j1], c, -0.5),
            pad_cols(prep.normb_t[:, j0:j1], c, -math.inf),
            pad_cols(prep.joint_fix[j0:j1], c, 0.0),
        ))  # fmt: skip
    for i0 in range(0, m, b):
        i1 = min(i0 + b, m)
        zb = z_t[:, i0:i1]
        if i1 - i0 < b:
            zb = torch.cat([zb, zb[:, -1:].expand(d, b - (i1 - i0))], dim=1)
        zb = zb.contiguous()
        row_lq = None
        for j0, j1, mu_c, nhp_c, nrm_c, fix_c in chunks:
            if tile is _fwd_tile:
                out = call_kernel(tile, zb, mu_c, nhp_c, nrm_c, fix_c, floor)
            else:
                diag = _diag_tile(i0, b, j0, c, n, m, deltas, dtype)
                out = call_kernel(tile, zb, mu_c, nhp_c, nrm_c, fix_c, diag, floor)
            if out is None:
                return None
            if sums is not None:
                part, part_sums, joint = out
                sums[:, i0:i1] += part_sums[:, : i1 - i0]
            else:
                part, joint = out
            part = part[: i1 - i0]
            row_lq = part if row_lq is None else torch.logaddexp(row_lq, part)
            if joint_out is not None:
                joint_out[i0:i1, j0:j1] = joint[: i1 - i0, : j1 - j0]
        if lq is not None and row_lq is not None:
            lq[i0:i1] = row_lq
        if progress is not None:
            progress(i1, m)
    return lq, sums, joint_out


def compiled_backward(
    z_t: torch.Tensor,
    mu_t: torch.Tensor,
    nhp_t: torch.Tensor,
    lnorm_t: torch.Tensor,
    deltas: list[tuple[int, float]],
    *,
    log_q: torch.Tensor,
    lqd_t: torch.Tensor | None,
    joint: torch.Tensor,
    grad_q: torch.Tensor,
    gqd_t: torch.Tensor | None,
) -> tuple[torch.Tensor, ...] | None:
    """Transposed ``(dz, dmu, dlogvar)`` ``(D, *)`` and ``d log c`` ``(N,)``, or ``None``.

    ``lnorm_t``: ``-(v + log 2 pi)/2 + log c_j + log w_other`` (the log-density
    constant with every weight but the diagonal deltas), ``lqd_t`` the
    forward's ``(D, M)`` marginal results (``None``: no marginals).
    """
    d, m = z_t.shape
    n = mu_t.shape[1]
    dtype = z_t.dtype
    b, c = _plan(m, n, d)
    cut = torch.tensor(softmax_cut(dtype, xp=torch_namespace()), dtype=dtype)
    gz = torch.zeros((d, m), dtype=dtype)
    gmu = torch.zeros((d, n), dtype=dtype)
    glv = torch.zeros((d, n), dtype=dtype)
    gc = torch.zeros((n,), dtype=dtype)

    def rows(x: torch.Tensor, i0: int, i1: int, fill: float) -> torch.Tensor:
        x = x[..., i0:i1]
        if i1 - i0 < b:
            x = pad_cols(x, b, fill)
        return x.contiguous()

    for j0 in range(0, n, c):
        j1 = min(j0 + c, n)
        mu_c = pad_cols(mu_t[:, j0:j1], c, 0.0)
        nhp_c = pad_cols(nhp_t[:, j0:j1], c, -0.5)
        nrm_c = pad_cols(lnorm_t[:, j0:j1], c, -math.inf)
        for i0 in range(0, m, b):
            i1 = min(i0 + b, m)
            zb = rows(z_t, i0, i1, 0.0)
            jb = pad_cols(joint[i0:i1, j0:j1], c, -math.inf)
            if i1 - i0 < b:
                jb = torch.cat([jb, jb.new_full((b - (i1 - i0), c), -math.inf)], dim=0)
            lqb = pad_cols(log_q[i0:i1], b, 0.0)
            gqb = pad_cols(grad_q[i0:i1], b, 0.0)
            if lqd_t is not None and gqd_t is not None:
                out = call_kernel(
                    _bwd_tile, zb, mu_c, nhp_c, nrm_c, rows(lqd_t, i0, i1, 0.0),
                    rows(gqd_t, i0, i1, 0.0), jb, lqb, gqb,
                    _diag_tile(i0, b, j0, c, n, m, deltas, dtype), cut,
                )  # fmt: skip
            else:
                out = call_kernel(_bwd_joint_tile, zb, mu_c, nhp_c, jb, lqb, gqb, cut)
            if out is None:
                return None
            pz, pmu, plv, pc = out
            gz[:, i0:i1] += pz[:, : i1 - i0]
            gmu[:, j0:j1] += pmu[:, : j1 - j0]
            glv[:, j0:j1] += plv[:, : j1 - j0]
            gc[j0:j1] += pc[: j1 - j0]
    return gz, gmu, glv, gc


def finish(
    lq: Array | None, sums: Array | None, joint: Array | None, prep: _Prepared, *, xp: Namespace
) -> tuple[Array | None, Array | None, Array | None, Array | None]:
    """``(log q, log q_d, joint, rows to redo)`` from the ``(D, M)`` bound-shifted sums."""
    if sums is None:
        return lq, None, joint, None
    lqd = xp.permute_dims(xp.log(sums) + prep.bound[:, None], (1, 0))
    good = sums >= prep.tiny
    bad_rows = ~xp.all(good, axis=0)
    redo = xp.nonzero(bad_rows)[0] if bool(xp.any(bad_rows)) else None
    return lq, lqd, joint, redo


def fused_forward(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    *,
    with_joint: bool,
    with_marginals: bool,
    keep_joint: bool,
    column_log_weights: Array | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[Array | None, Array | None, Array | None, Array | None] | None:
    """``(log q, log q_d, joint, rows to redo)`` from the fused kernels (before the
    uniform weight), or ``None`` where they do not serve."""
    m, d = z.shape
    if not use_compiled(z, m, mu.shape[0], d):
        return None
    xp = torch_namespace()
    z_t = z.T.contiguous()
    mu_t = mu.T.contiguous()
    lv_t = logvar.T.contiguous()
    prep = prepare(mu_t, lv_t, column_log_weights, xp=xp)
    out = compiled_forward(
        z_t, prep, diagonal_deltas(weights), with_joint=with_joint,
        with_marginals=with_marginals, keep_joint=keep_joint, progress=progress,
    )  # fmt: skip
    return None if out is None else finish(*out, prep, xp=xp)


def fused_backward(  # noqa: PLR0917 - private, one caller
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    log_q: Array,
    log_qd: Array | None,
    joint: Array,
    grad_q: Array,
    grad_qd: Array | None,
    column_log_weights: Array | None,
    *,
    xp: Namespace,
) -> tuple[Array, Array, Array, Array] | None:
    """:func:`backward` through the fused kernels, or ``None`` where they do not serve."""
    m, d = z.shape
    if not use_compiled(z, m, mu.shape[0], d):
        return None
    z_t = z.T.contiguous()
    mu_t = mu.T.contiguous()
    lv_t = logvar.T.contiguous()
    lnorm_t = neg_half_log_normaliser(lv_t, xp=xp) + weights.log_other
    if column_log_weights is not None:
        lnorm_t = lnorm_t + column_log_weights[None, :]
    out = compiled_backward(
        z_t, mu_t, -0.5 * xp.exp(-lv_t), lnorm_t, diagonal_deltas(weights), log_q=log_q,
        lqd_t=None if log_qd is None else log_qd.T.contiguous(),
        joint=joint, grad_q=grad_q,
        gqd_t=None if grad_qd is None else grad_qd.T.contiguous(),
    )  # fmt: skip
    if out is None:
        return None
    gz, gmu, glv, gc = out
    return (
        xp.permute_dims(gz, (1, 0)),
        xp.permute_dims(gmu, (1, 0)),
        xp.permute_dims(glv, (1, 0)),
        gc,
    )


def fused_forward_numpy(
    z: Array, mu: Array, logvar: Array, weights: LogWeights, *,
    column_log_weights: Array | None, **options: Any,
) -> tuple[Array | None, Array | None, Array | None, Array | None] | None:  # fmt: skip
    """:func:`fused_forward` (same ``options``) on NumPy arrays: torch views in, NumPy out.

    ``None`` where the kernels do not serve (then the NumPy tiles run). Views
    share memory with the inputs (read-only and reversed arrays are copied
    first: :func:`torch_view`); the results are the kernels' own buffers.
    """

    def view(x: Array | None) -> torch.Tensor | None:
        return None if x is None else torch_view(x)

    out = fused_forward(
        view(z), view(mu), view(logvar), weights,
        column_log_weights=view(column_log_weights), **options,
    )  # fmt: skip
    if out is None:
        return None
    return tuple(None if x is None else x.numpy() for x in out)  # type: ignore[return-value]
