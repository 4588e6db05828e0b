"""Private engine of the MMD estimators: block sums of kernel Gram matrices.

The public functions in :mod:`vaemath._mmd` validate their arguments and call
:func:`block_sum`, which returns ``sum_{i,j} sum_s k_s(x_i, y_j)`` without ever
forming an ``(n, m, D)`` array. Squared distances come from the Gram trick

.. math::

    \\lVert x_i - y_j \\rVert^2 = \\lVert x_i \\rVert^2 + \\lVert y_j \\rVert^2
    - 2\\, x_i^\\top y_j,

folded into *one* matrix product of augmented matrices: for the RBF kernel
with one bandwidth ``h``,

.. math::

    [x_i,\\; -\\tfrac12\\lVert x_i\\rVert^2,\\; 1]
    \\cdot [y_j / h^2,\\; 1/h^2,\\; -\\tfrac12\\lVert y_j\\rVert^2 / h^2]^\\top
    = -\\lVert x_i - y_j \\rVert^2 / (2 h^2),

so the product is already the exponent. The rows are processed in chunks of
about ``_CHUNK_ELEMENTS`` entries, small enough that the clamp (generic path only), ``exp`` and sum
passes after the product run in cache, and memory stays ``O(chunk + (n + m) D)``
without autograd. A self block ``k(x, x)`` is symmetric: only the chunks on and
above the diagonal are computed (half the work). Torch and NumPy apply the
element-wise passes in place (``exp_`` / ``out=``); the generic Array-API path
(used by array-api-strict, JAX, ...) does the same arithmetic out of place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._lib._compat import device, is_jax_namespace, is_numpy_namespace, is_torch_namespace
from ._lib._helpers import Array, Namespace

# Entries of one chunk of a Gram block (float32: 4 MiB): the chunk stays in the
# (last-level) CPU cache between the matrix product and the element-wise passes,
# and chunks are few enough that the per-op thread synchronisation of a
# multi-threaded library stays negligible, even on a busy machine.
_CHUNK_ELEMENTS = 1 << 20

Scale = Any  # a Python float or a 0-d array


def pooled_centre(x: Array, y: Array, *, xp: Namespace) -> tuple[Array, Array]:
    """Subtract the pooled mean of ``x`` and ``y`` from both (distances unchanged).

    The Gram trick loses ``eps * (|x|^2 + |y|^2)`` to cancellation; centring
    first makes the norms the spread of the data rather than its offset.
    """
    n, m = x.shape[0], y.shape[0]
    centre = (xp.sum(x, axis=0) + xp.sum(y, axis=0)) / (n + m)
    return x - centre, y - centre


def squared_distances(x: Array, y: Array, *, xp: Namespace) -> Array:
    """``(n, m)`` squared Euclidean distances by the Gram trick, clamped at 0."""
    xx = xp.sum(x * x, axis=1)
    yy = xp.sum(y * y, axis=1)
    d = xx[:, None] + yy[None, :] - 2.0 * (x @ xp.matrix_transpose(y))
    return xp.maximum(d, xp.zeros((), dtype=d.dtype, device=device(d)))


def _augment(x: Array, y: Array, kind: str, factor: Scale, *, xp: Namespace) -> tuple[Array, Array]:
    """Augmented factors whose product is ``-d / (2 h^2)`` (rbf) or ``d / C`` (imq).

    ``factor`` is ``1 / h^2`` (rbf) or ``1 / C`` (imq).
    """
    dtype, dev = x.dtype, device(x)
    xx = xp.sum(x * x, axis=1)[:, None]
    yy = xp.sum(y * y, axis=1)[:, None]
    ones_x = xp.ones((x.shape[0], 1), dtype=dtype, device=dev)
    ones_y = xp.ones((y.shape[0], 1), dtype=dtype, device=dev)
    if kind == "rbf":
        a = xp.concat([x, -0.5 * xx, ones_x], axis=1)
        b = xp.concat([y * factor, ones_y * factor, (-0.5 * factor) * yy], axis=1)
    else:
        a = xp.concat([x, xx, ones_x], axis=1)
        b = xp.concat([(-2.0 * factor) * y, ones_y * factor, yy * factor], axis=1)
    return a, b


def _kernel_generic(g: Array, kind: str, scale: Scale | None, *, xp: Namespace) -> Array:
    """Kernel values from the exponent (rbf) / scaled distance (imq) chunk ``g``."""
    zero = xp.zeros((), dtype=g.dtype, device=device(g))
    t = g if scale is None else g / scale
    if kind == "rbf":
        return xp.exp(xp.minimum(t, zero))
    return 1.0 / (1.0 + xp.maximum(t, zero))


# The fast paths below skip the clamp of the generic path: an exponent that
# rounding pushed to +tiny gives exp() = 1 + tiny, an error of the same order
# as the rounding of every other entry, so the sums are equally accurate and
# one memory pass is saved. (The public Gram functions do clamp.)


def _kernel_torch(g: Array, kind: str, scale: Scale | None) -> Array:
    # In-place passes on a fresh matmul output (or a fresh quotient): allowed
    # by autograd (mm does not save its output; exp_/reciprocal_ save their
    # result). ``g`` itself is overwritten when ``scale`` is None.
    t = g if scale is None else g / scale
    if kind == "rbf":
        return t.exp_()
    return t.add_(1.0).reciprocal_()


def _kernel_numpy(g: Array, kind: str, scale: Scale | None) -> Array:
    import numpy as np

    t = g if scale is None else g / scale
    if kind == "rbf":
        np.exp(t, out=t)
    else:
        t += 1.0
        np.reciprocal(t, out=t)
    return t


def block_sum(
    x: Array,
    y: Array,
    *,
    kind: str,
    scales: Sequence[Scale],
    symmetric: bool,
    xp: Namespace,
) -> Array:
    """``sum_{i,j} sum_s k_s(x_i, y_j)`` for the rbf/imq kernel family.

    ``scales`` are bandwidths ``h`` (rbf) or scales ``C`` (imq). With
    ``symmetric=True`` the caller guarantees ``y is x`` and only the upper
    triangle of chunks is computed.
    """
    if is_torch_namespace(xp):
        kernel = _kernel_torch
    elif is_numpy_namespace(xp):
        kernel = _kernel_numpy
    else:

        def kernel(g: Array, kind: str, scale: Scale | None) -> Array:
            return _kernel_generic(g, kind, scale, xp=xp)

    if len(scales) == 1:
        s = scales[0]
        factor = 1.0 / (s * s) if kind == "rbf" else 1.0 / s
        a, b = _augment(x, y, kind, factor, xp=xp)
        per_chunk: list[Scale | None] = [None]
    else:
        a, b = _augment(x, y, kind, 1.0, xp=xp)
        # Base product: -d / 2 (rbf) or d (imq); each scale divides it.
        per_chunk = [(s * s) if kind == "rbf" else s for s in scales]
    if is_jax_namespace(xp):  # pragma: no cover - exercised only where jax is installed
        # Every new chunk shape costs JAX a compilation: keep the chunks of a
        # self block rectangular (same shape each time) instead of triangular.
        symmetric = False
    bt = xp.matrix_transpose(b)
    n, m = a.shape[0], b.shape[0]
    rows = max(1, _CHUNK_ELEMENTS // max(m, 1))
    total = xp.zeros((), dtype=x.dtype, device=device(x))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        if symmetric:
            # Rows start..stop against columns start..m: the square on the
            # diagonal counts once, the rectangle to its right twice.
            g = a[start:stop, :] @ bt[:, start:]
            width = stop - start
            for sc in per_chunk:
                k = kernel(g, kind, sc)
                total = total + (2.0 * xp.sum(k) - xp.sum(k[:, :width]))
        else:
            g = a[start:stop, :] @ bt
            for sc in per_chunk:
                total = total + xp.sum(kernel(g, kind, sc))
    return total
