"""Native eager kernels for the standard-prior :func:`vaemath.gaussian_kl`.

The generic Array-API code in :mod:`._diag` allocates a fresh array for each
of its ~20 elementwise steps. That is free under a compiler (``torch.compile``,
``jax.jit`` fuse it into one loop) but costs several times the naive formula in
eager mode, where every step is a separate pass over memory. These kernels
compute the same :math:`h(d)` of :mod:`._expm1mx` (same switch, same
coefficients) with the same accuracy in few passes; they are listed, with what
they mirror, in ``docs/fast_paths.inc`` (their timings: the benchmark tables).

* torch (eager, float32/float64, any device): in-place Horner steps on two
  scratch tensors, wrapped in an ``autograd.Function`` whose backward is the
  analytic gradient written with ordinary (differentiable) torch ops.
* NumPy float32: evaluated in cache-sized float64 blocks with the
  ``WIDE_SERIES_SWITCH`` variant of :math:`h`, then rounded once to float32.

Both are chosen only by type and dtype (never by values), and the generic path
remains the reference they are tested against (``tests/test_gaussian.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._lib._compat import is_numpy_namespace, is_torch_namespace, torch_transformed
from .._lib._helpers import Array, Namespace
from ._expm1mx import SWITCH, WIDE_SERIES_SWITCH, poly_coefficients, taylor_coefficients

__all__ = ["eager_kl_standard"]

_SWITCH2 = SWITCH * SWITCH


def eager_kl_standard(mu: Array, logvar: Array, *, xp: Namespace) -> Array | None:
    """The native kernel's result for namespace ``xp``, or ``None`` (use the generic path)."""
    if is_torch_namespace(xp):
        return _kl_std_torch(mu, logvar)
    if is_numpy_namespace(xp):
        return _kl_std_numpy(mu, logvar)
    return None


# -- torch ------------------------------------------------------------------------


_SCALARS: dict[tuple[Any, Any], tuple[Any, ...]] = {}


class _DMax(dict):
    """log(finfo(dtype).max) - 1, per torch dtype, computed on first use."""

    def __missing__(self, dtype: Any) -> float:
        import torch

        value = math.log(torch.finfo(dtype).max) - 1.0
        self[dtype] = value
        return value


_D_MAX = _DMax()


def _coefficient_tensors(like: Any) -> tuple[Any, ...]:
    """0-d tensors of the polynomial coefficients, cached per dtype/device."""
    import torch

    key = (like.dtype, like.device)
    cached = _SCALARS.get(key)
    if cached is None:
        coef = poly_coefficients(like.dtype == torch.float64)
        cached = tuple(torch.tensor(c, dtype=like.dtype, device=like.device) for c in coef)
        _SCALARS[key] = cached
    return cached


def _torch_forward(mu: Any, logvar: Any) -> Any:
    import torch

    coef = _coefficient_tensors(logvar)
    # e^d overflows for d > log(max) although e^d / 2 may not: there, evaluate
    # at min(d, d_max) and scale by exp(max(d, d_max) - d_max). On CPU that
    # slower path is taken only when some logvar exceeds d_max (one reduction;
    # NaN compares False and propagates anyway); elsewhere always, to avoid a
    # device-to-host synchronisation.
    d_max = _D_MAX[logvar.dtype]
    overflow = logvar.device.type != "cpu" or bool(torch.any(logvar > d_max))
    d = logvar.clamp(max=d_max) if overflow else logvar
    p = torch.addcmul(coef[-2], d, coef[-1])
    for c in coef[-3::-1]:
        torch.addcmul(c, p, d, out=p)  # Horner step p = c + p d, in place
    q = d * d
    p.mul_(q)  # h(d) = d^2 g(d) for |d| < T
    e = torch.expm1(d)
    e.sub_(d).mul_(0.5)  # h(d) = (expm1(d) - d) / 2 for |d| >= T
    torch.where(torch.lt(q, coef[-1].new_tensor(_SWITCH2)), p, e, out=e)
    if overflow:
        e.mul_(logvar.clamp(min=d_max).sub_(d_max).exp_())
    if e.shape != mu.shape:
        e = e.expand(torch.broadcast_shapes(e.shape, mu.shape)).clone()
    return e.addcmul_(mu, mu, value=0.5)


def _sum_to(grad: Any, shape: Any) -> Any:
    if tuple(grad.shape) == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    axes = list(range(lead)) + [
        lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1
    ]
    out = grad.sum(dim=axes, keepdim=True) if axes else grad
    return out.reshape(shape)


_KLFunction: Any = None


def _make_function() -> Any:
    import torch

    class _StandardKL(torch.autograd.Function):
        """KL(N(mu, e^lv) || N(0, 1)) with an analytic backward."""

        @staticmethod
        def forward(mu: Any, logvar: Any) -> Any:
            return _torch_forward(mu, logvar)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            mu, logvar = ctx.saved_tensors
            grad_mu = grad_logvar = None
            if ctx.needs_input_grad[0]:
                grad_mu = _sum_to(grad * mu, mu.shape)
            if ctx.needs_input_grad[1]:
                grad_logvar = _sum_to(0.5 * grad * torch.expm1(logvar), logvar.shape)
            return grad_mu, grad_logvar

    return _StandardKL


def _kl_std_torch(mu: Any, logvar: Any) -> Any | None:
    """Eager torch kernel, or ``None`` where the generic path must run.

    The generic path runs under ``torch.compile``, ``torch.func`` transforms and
    forward-mode AD (which fuse or differentiate it) and for dtypes other than
    float32/float64.
    """
    import torch

    if (
        torch.compiler.is_compiling()
        or mu.dtype not in (torch.float32, torch.float64)
        or torch_transformed(mu, logvar)
    ):
        return None
    if torch.is_grad_enabled() and (mu.requires_grad or logvar.requires_grad):
        global _KLFunction  # noqa: PLW0603 - built once, on first use
        if _KLFunction is None:
            _KLFunction = _make_function()
        return _KLFunction.apply(mu, logvar)
    with torch.no_grad():
        return _torch_forward(mu, logvar)


# -- NumPy ------------------------------------------------------------------------

_SERIES = taylor_coefficients(1)
_BLOCK = 8192  # float64 scratch of 64 KiB per buffer: stays in L2.


def _kl_std_numpy(mu: Array, logvar: Array) -> Array | None:
    """Blocked float32 kernel for NumPy, or ``None`` for other dtypes."""
    if mu.dtype != np.float32:
        return None
    shape = np.broadcast_shapes(mu.shape, logvar.shape)
    mu_b = np.broadcast_to(mu, shape).reshape(-1)
    lv_b = np.broadcast_to(logvar, shape).reshape(-1)
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1)
    n = flat.size
    size = min(_BLOCK, max(n, 1))
    d = np.empty(size)
    e = np.empty(size)
    t = np.empty(size)
    small = np.empty(size, dtype=bool)
    with np.errstate(all="ignore"):
        for start in range(0, n, size):
            stop = min(start + size, n)
            k = stop - start
            twice = _block64(
                mu_b[start:stop], lv_b[start:stop], d=d[:k], e=e[:k], t=t[:k], small=small[:k]
            )
            np.multiply(twice, 0.5, out=flat[start:stop], casting="same_kind")
    return out


def _block64(mu: Array, logvar: Array, *, d: Array, e: Array, t: Array, small: Array) -> Array:
    """``2 KL`` for one block, in float64 scratch (all in place); returns ``e``."""
    np.copyto(d, logvar)
    np.minimum(d, np.finfo(np.float64).max, out=d)  # +inf -> max, keeps nan
    # 2 h(d) = (exp(d) - 1) - d beyond WIDE_SERIES_SWITCH ...
    np.exp(d, out=e)
    e -= 1.0
    e -= d
    # ... and 2 d^2 (c0 + c1 d) below it (the Taylor series of g, degree 1).
    np.multiply(d, 2.0 * _SERIES[1], out=t)
    t += 2.0 * _SERIES[0]
    np.square(d, out=d)
    t *= d
    np.less(d, WIDE_SERIES_SWITCH**2, out=small)
    np.copyto(e, t, where=small)
    np.copyto(d, mu)
    d *= d  # exact: a float32 squared fits in float64
    e += d
    return e
