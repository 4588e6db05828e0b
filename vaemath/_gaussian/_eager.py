r"""Native eager kernels for the standard-prior :func:`vaemath.gaussian_kl`.

The generic Array-API code in :mod:`._diag` allocates a fresh array for each
of its ~20 elementwise steps. That is free under a compiler (``torch.compile``,
``jax.jit`` fuse it into one loop) but costs several times the naive formula in
eager mode, where every step is a separate pass over memory. These kernels
compute the same :math:`h(d)` of :mod:`._expm1mx` (same switch, same
coefficients) with the same accuracy in few passes; they are listed, with what
they mirror, in ``docs/fast_paths.inc`` (their timings: the benchmark tables).

* float32, torch (any device) and NumPy: evaluated in L2-sized float64
  blocks as the maximum of two lower bounds of :math:`2h`
  (``WIDE_LOWER_COEFFICIENTS``, ``WIDE_EXP_BIAS``): no switch, no ``where``, no
  ``expm1`` (neither library vectorises it), no overflow test (float64 holds
  every float32 :math:`e^d`), rounded once to float32. Under torch autograd
  the same pass stores :math:`\tfrac12 \operatorname{expm1}(d)` for the
  backward, which is then one product per input. On the CPU the blocks are
  NumPy ufunc calls (on zero-copy views of torch tensors), whose fixed cost is
  a fraction of a torch operation's, with torch's vectorised float64 ``exp``
  where NumPy's is not vectorised (no AVX-512F) and torch is installed. At
  most ``_FEW`` elements of one shape run the same steps as the fewest
  library calls on fresh arrays (NumPy's, or torch's for tensors: there each
  call's fixed cost is the time). Other torch devices run the same steps as
  torch operations, in one block.
* float64, torch: in-place Horner steps on two scratch tensors (the
  coefficients and switch of :mod:`._expm1mx`); analytic backward written
  with ordinary (differentiable) torch ops.

They are chosen only by type, dtype, size and the CPU (never by values), and the generic path
remains the reference they are tested against (``tests/test_gaussian.py``).
"""

from __future__ import annotations

import functools
import math
import sys
from typing import Any

import numpy as np

from .._lib._compat import (
    is_numpy_namespace,
    is_torch_namespace,
    torch_installed,
    torch_transformed,
)
from .._lib._helpers import Array, Namespace
from ._expm1mx import SWITCH, WIDE_EXP_BIAS, WIDE_LOWER_COEFFICIENTS, poly_coefficients

__all__ = ["eager_kl_standard", "fast_kl_standard"]

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


# -- float32: twice the KL in float64 blocks, from two lower bounds of 2h ---------

# Elements per block: three float64 scratch buffers of 128 KiB, which with the
# block's inputs and outputs stay in a core's L2 cache (512 KiB and up).
_BLOCK = 1 << 14
# torch float32 CPU tensors run _kl32_blocks on NumPy views (the torch loops
# below serve other devices; tests switch this off to run them on CPU too).
_HOST_BLOCKS = True
# At most this many elements, same shapes: _kl32_torch_few (fewest operations);
# above it the blocked in-place loop, whose passes cost more than the ~15 calls.
_FEW = 1 << 13
_C0 = 2.0 * WIDE_LOWER_COEFFICIENTS[0]  # 2h >= d^2 (C0 + C1 d): 1/2 ...
_C1 = 2.0 * WIDE_LOWER_COEFFICIENTS[1]  # ... and 1/6
_ONE_BIAS = 1.0 + WIDE_EXP_BIAS  # 2h >= e^d - (1 + bias) - d, expm1(d) >= e^d - (1 + bias)
# torch: d = +inf is clamped to a finite d whose exp still overflows, so that
# e^d - 1 - d is inf, not inf - inf (torch.maximum propagates that nan; fmax,
# which would not, is several times slower than maximum).
_BIG = 1e300


def _numpy_view(x: Any) -> Array:
    """A CPU tensor (float32, no grad needed) as a NumPy array sharing its memory."""
    return x.detach().resolve_neg().numpy()


def _blocks(n: int) -> tuple[int, range]:
    size = min(_BLOCK, max(n, 1))
    return size, range(0, n, size)


def _kl32_numpy_few(mu: Array, logvar: Array) -> Array:
    """:func:`_kl32_numpy` for few elements (at most :data:`_FEW`), same shapes.

    The same steps in the fewest NumPy calls, on fresh arrays: there each
    call's fixed cost, not its pass over memory, is the time.
    """
    with np.errstate(all="ignore"):
        d = logvar.astype(np.float64).reshape(-1)  # 1-d: ufuncs of 0-d arrays give scalars
        e = np.exp(d)
        e -= _ONE_BIAS
        e -= d
        t = d * _C1
        t += _C0
        t *= d
        t *= d
        np.fmax(t, e, out=e)  # 2h; fmax: inf - inf = nan at d = +inf loses to inf
        e += np.square(mu.reshape(-1), dtype=np.float64)
        e *= 0.5
        return e.astype(np.float32).reshape(logvar.shape)


def _kl32_numpy(mu: Array, logvar: Array) -> Array:
    """Standard-prior KL of float32 NumPy arrays (float64 blocks, one rounding)."""
    if mu.shape == logvar.shape and mu.size <= _FEW:
        return _kl32_numpy_few(mu, logvar)
    out = np.empty(np.broadcast_shapes(mu.shape, logvar.shape), dtype=np.float32)
    _kl32_blocks(mu, logvar, out, None, torch_exp=_torch_exp_for_numpy())
    return out


def _kl32_blocks(
    mu: Array, logvar: Array, out: Array, half: Array | None, *, torch_exp: bool
) -> None:
    """Write the KL of float32 ``mu``, ``logvar`` into C-contiguous float32 ``out``.

    NumPy arrays broadcastable to ``out.shape``; ``half`` (same as ``out``), if
    given, receives ``expm1(logvar) / 2``. Each block of :data:`_BLOCK` elements
    runs in three float64 scratch buffers that stay in a core's L2 cache, with
    NumPy's ufuncs (about a microsecond of fixed cost a call, against several for
    a torch operation). ``torch_exp``: the float64 ``exp`` by torch, on views of
    the same buffers (vectorised on every x86-64 CPU, where NumPy's is only with
    AVX-512).
    """
    shape = out.shape
    mu_f = (mu if mu.shape == shape else np.broadcast_to(mu, shape)).reshape(-1)
    lv_f = (logvar if logvar.shape == shape else np.broadcast_to(logvar, shape)).reshape(-1)
    flat = out.reshape(-1)
    half_f = None if half is None else half.reshape(-1)
    size, starts = _blocks(flat.size)
    d, e, t = np.empty(size), np.empty(size), np.empty(size)
    if torch_exp:
        import torch

        d_t, e_t = torch.from_numpy(d), torch.from_numpy(e)
    with np.errstate(all="ignore"):
        for start in starts:
            stop = min(start + size, flat.size)
            if stop - start < size:  # the last, shorter block
                d, e, t = d[: stop - start], e[: stop - start], t[: stop - start]
                if torch_exp:
                    d_t, e_t = d_t[: stop - start], e_t[: stop - start]
            np.copyto(d, lv_f[start:stop])
            if torch_exp:
                torch.exp(d_t, out=e_t)
            else:
                np.exp(d, out=e)
            e -= _ONE_BIAS
            if half_f is not None:
                np.maximum(e, d, out=t)  # expm1(d) >= max(e^d - (1 + bias), d)
                np.multiply(t, 0.5, out=half_f[start:stop], casting="same_kind")
            e -= d
            np.multiply(d, _C1, out=t)
            t += _C0
            t *= d
            t *= d
            np.fmax(t, e, out=e)  # 2h; fmax: inf - inf = nan at d = +inf loses to inf
            np.square(mu_f[start:stop], out=t, dtype=np.float64)
            e += t
            np.multiply(e, 0.5, out=flat[start:stop], casting="same_kind")


def _kl32_torch(mu: Any, logvar: Any, *, half_expm1: bool) -> tuple[Any, Any]:
    """Standard-prior KL of float32 tensors, and ``expm1(logvar) / 2`` if asked.

    Inputs must not require grad (this runs under ``no_grad`` or inside the
    autograd Function). At most :data:`_FEW` elements of one shape:
    :func:`_kl32_torch_few`. Above, on CPU (where :data:`_HOST_BLOCKS`),
    :func:`_kl32_blocks` on NumPy views of the tensors; elsewhere the same steps
    in torch, in one block (a Python loop would launch kernels per block).
    """
    import torch

    if mu.shape == logvar.shape and mu.numel() <= _FEW:
        return _kl32_torch_few(mu, logvar, half_expm1=half_expm1)
    if _HOST_BLOCKS and mu.device.type == "cpu":
        # torch.broadcast_shapes costs more than a small KL (about 40 µs)
        shape = (
            mu.shape if mu.shape == logvar.shape else torch.broadcast_shapes(mu.shape, logvar.shape)
        )
        out = torch.empty(shape, dtype=torch.float32)  # returned: a resizable tensor
        half_np = np.empty(shape, dtype=np.float32) if half_expm1 else None  # saved only
        _kl32_blocks(_numpy_view(mu), _numpy_view(logvar), out.numpy(), half_np, torch_exp=True)
        return out, None if half_np is None else torch.from_numpy(half_np)
    device = mu.device
    if mu.shape == logvar.shape:
        shape = mu.shape
        mu_f, lv_f = mu.reshape(-1), logvar.reshape(-1)
    else:
        shape = torch.broadcast_shapes(mu.shape, logvar.shape)
        mu_f, lv_f = mu.expand(shape).reshape(-1), logvar.expand(shape).reshape(-1)
    out = torch.empty(shape, dtype=torch.float32, device=device)
    flat = out.view(-1)
    half = torch.empty_like(flat) if half_expm1 else None
    n = flat.numel()
    size, starts = _blocks(n) if device.type == "cpu" else (max(n, 1), range(0, n, max(n, 1)))
    d, e, t = (torch.empty(size, dtype=torch.float64, device=device) for _ in range(3))
    for start in starts:
        stop = min(start + size, n)
        if stop - start < size:  # the last, shorter block
            d, e, t = d[: stop - start], e[: stop - start], t[: stop - start]
        whole = stop - start == n
        d.copy_(lv_f if whole else lv_f[start:stop]).clamp_(max=_BIG)
        torch.exp(d, out=e)
        e.sub_(_ONE_BIAS)
        if half is not None:
            torch.maximum(e, d, out=t)  # expm1(d)
            (half if whole else half[start:stop]).copy_(t.mul_(0.5))
        e.sub_(d)
        torch.mul(d, _C1, out=t).add_(_C0).mul_(d).mul_(d)  # Python scalars: no broadcast
        torch.maximum(t, e, out=e)  # 2h
        t.copy_(mu_f if whole else mu_f[start:stop])
        e.addcmul_(t, t)
        (flat if whole else flat[start:stop]).copy_(e.mul_(0.5))
    return out, (None if half is None else half.view(shape))


def _kl32_torch_few(mu: Any, logvar: Any, *, half_expm1: bool) -> tuple[Any, Any]:
    """:func:`_kl32_torch` for few elements (at most :data:`_FEW`), same shapes.

    The same bounds and the same single rounding, in the fewest torch
    operations (out-of-place, mixed float32/float64): there each operation's
    fixed cost, not its pass over memory, is the time.
    """
    import torch

    d = logvar.double()  # .double() / .float(): about half the call cost of .to(dtype)
    e = torch.exp(d).sub_(_ONE_BIAS)
    half = torch.maximum(e, d).mul_(0.5).float() if half_expm1 else None
    e.sub_(d)
    q = d.square()
    t = torch.addcmul(q, q, d, value=_C1 / _C0).mul_(_C0)  # d^2 (C0 + C1 d)
    torch.fmax(t, e, out=e)  # fmax: inf - inf = nan at d = +inf loses to inf
    return e.addcmul_(mu, mu).mul_(0.5).float(), half


def _lower_bound_path(x: Any) -> bool:
    """float32 on CPU or CUDA takes :func:`_kl32_torch` (others lack float64 or speed)."""
    import torch

    return x.dtype == torch.float32 and x.device.type in ("cpu", "cuda")


_KLFunction: Any = None


def _make_function() -> Any:
    import torch

    class _StandardKL(torch.autograd.Function):
        """KL(N(mu, e^lv) || N(0, 1)) with an analytic backward."""

        @staticmethod
        def forward(ctx: Any, mu: Any, logvar: Any) -> Any:
            if _lower_bound_path(mu):
                out, half = _kl32_torch(mu, logvar, half_expm1=ctx.needs_input_grad[1])
            else:
                out, half = _torch_forward(mu, logvar), None
            ctx.save_for_backward(mu, logvar, half)
            return out

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            mu, logvar, half = ctx.saved_tensors
            grad_mu = grad_logvar = None
            if ctx.needs_input_grad[0]:
                grad_mu = _sum_to(grad * mu, mu.shape)
            if ctx.needs_input_grad[1]:
                if half is None or torch.is_grad_enabled():
                    # float64, or a double backward (create_graph=True): the
                    # derivative must itself be differentiable in logvar.
                    g = 0.5 * grad * torch.expm1(logvar)
                else:
                    g = grad * half
                grad_logvar = _sum_to(g, logvar.shape)
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
    if _lower_bound_path(mu):
        return _kl32_torch(mu, logvar, half_expm1=False)[0]
    with torch.no_grad():
        return _torch_forward(mu, logvar)


# -- NumPy ------------------------------------------------------------------------


@functools.cache
def _numpy_exp64_vectorised() -> bool:
    """Whether NumPy's float64 ``exp`` runs its SIMD loop on this CPU.

    NumPy's float64 ``exp`` is a vector loop only in its AVX-512 builds of the
    ufunc (x86-64-v4); its other builds (AVX2 x86, Arm) call libm per element,
    2-3 times slower than torch's vector loop (the ``float64 exp`` row of the
    KL benchmarks measures it). Read from NumPy's dispatch table
    (:func:`numpy.lib.introspect.opt_func_info`), so the choice depends on the
    machine, never on the values or on timing; unknown counts as vectorised
    (NumPy's own loop runs).
    """
    try:
        from numpy.lib.introspect import opt_func_info

        info = opt_func_info(func_name="^exp$", signature="float64")
        current = str(next(iter(info["exp"].values()))["current"])
    except (ImportError, KeyError, StopIteration, TypeError):  # pragma: no cover
        return True
    return "X86_V4" in current or "AVX512" in current


def _torch_exp_for_numpy() -> bool:
    """Whether the float32 NumPy blocks take torch's float64 ``exp`` (see
    :func:`_numpy_exp64_vectorised`): where torch is installed and NumPy's
    ``exp`` is not vectorised."""
    return not _numpy_exp64_vectorised() and torch_installed()


def _kl_std_numpy(mu: Array, logvar: Array) -> Array | None:
    """The float32 NumPy kernel, or ``None`` for other dtypes (the generic path)."""
    if mu.dtype != np.float32 or logvar.dtype != np.float32:
        return None
    return _kl32_numpy(mu, logvar)


def fast_kl_standard(mu: Any, logvar: Any) -> Any | None:
    """:func:`eager_kl_standard` before any namespace resolution, or ``None``.

    Taken only for two plain arrays of one type (``numpy.ndarray`` or
    ``torch.Tensor``), one float32/float64 dtype, one shape and one device:
    there, resolving the namespace and checking the broadcast would find
    nothing to convert or reject, and costs more than the kernel on small
    inputs. Everything else returns ``None`` (the checked public path).
    """
    kind = type(mu)
    if kind is not type(logvar):
        return None
    if kind is np.ndarray:
        if mu.shape != logvar.shape:
            return None
        return _kl_std_numpy(mu, logvar)
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and kind is torch.Tensor
        and mu.shape == logvar.shape
        and mu.dtype == logvar.dtype
        and mu.device == logvar.device
    ):
        return _kl_std_torch(mu, logvar)
    return None
