r"""The engine of the MMD estimators: chunked sums of kernel Gram blocks.

:func:`block_sum` returns ``sum_{i,j} sum_s k_s(x_i, y_j)`` without ever
forming an ``(n, m, D)`` array or a whole ``(n, m)`` block. Squared distances
come from the Gram trick

.. math::

    \lVert x_i - y_j \rVert^2 = \lVert x_i \rVert^2 + \lVert y_j \rVert^2
    - 2\, x_i^\top y_j,

folded into *one* matrix product of augmented matrices: with
:math:`f = 1 / \mathrm{divisor}` (:func:`._kernels.divisor`: :math:`-1/(2h^2)`
for rbf, :math:`1/C` for imq),

.. math::

    [x_i,\; \lVert x_i\rVert^2,\; 1]
    \cdot [-2 f\, y_j,\; f,\; f \lVert y_j\rVert^2]^\top
    = f \lVert x_i - y_j \rVert^2 = u_{ij},

so the product is already the reduced distance that
:func:`._kernels.from_reduced` turns into kernel values. With several scales
the product is taken once with :math:`f = 1` and each scale divides it. The
rows are processed in chunks of about ``_CHUNK_ELEMENTS`` entries, small
enough that the element-wise passes after the product run in cache, and memory
stays ``O(chunk + (n + m) D)`` without autograd. A self block ``k(x, x)`` is
symmetric: only the chunks on and above the diagonal are computed (half the
work).
"""

from __future__ import annotations

from collections.abc import Sequence

from .._lib._compat import device, is_jax_namespace
from .._lib._helpers import Array, Namespace
from ._kernels import Scale, divisor, from_reduced

__all__ = ["block_sum"]

# Entries of one chunk of a Gram block (float32: 4 MiB): the chunk stays in the
# (last-level) CPU cache between the matrix product and the element-wise passes,
# and chunks are few enough that the per-op thread synchronisation of a
# multi-threaded library stays negligible, even on a busy machine.
_CHUNK_ELEMENTS = 1 << 20


def _augment(x: Array, y: Array, factor: Scale, *, xp: Namespace) -> tuple[Array, Array]:
    """Augmented factors ``a, b`` with ``a @ b.T = factor * |x_i - y_j|^2``."""
    dtype, dev = x.dtype, device(x)
    xx = xp.sum(x * x, axis=1)[:, None]
    yy = xp.sum(y * y, axis=1)[:, None]
    ones_x = xp.ones((x.shape[0], 1), dtype=dtype, device=dev)
    ones_y = xp.ones((y.shape[0], 1), dtype=dtype, device=dev)
    a = xp.concat([x, xx, ones_x], axis=1)
    b = xp.concat([(-2.0 * factor) * y, ones_y * factor, yy * factor], axis=1)
    return a, b


def block_sum(
    x: Array,
    y: Array,
    *,
    kind: str,
    scales: Sequence[Scale],
    symmetric: bool,
    xp: Namespace,
) -> Array:
    """``sum_{i,j} sum_s k_s(x_i, y_j)`` for the rbf / imq kernel family.

    ``scales`` are bandwidths ``h`` (rbf) or scales ``C`` (imq). With
    ``symmetric=True`` the caller guarantees ``y is x`` and only the upper
    triangle of chunks is computed.
    """
    if len(scales) == 1:
        a, b = _augment(x, y, 1.0 / divisor(kind, scales[0]), xp=xp)
        per_chunk: list[Scale | None] = [None]
    else:
        a, b = _augment(x, y, 1.0, xp=xp)  # the squared distances themselves
        per_chunk = [divisor(kind, s) for s in scales]
    if is_jax_namespace(xp):  # pragma: no cover - exercised only where jax is installed
        # Every new chunk shape costs JAX a compilation: keep the chunks of a
        # self block rectangular (same shape each time) instead of triangular.
        symmetric = False

    def kernel(g: Array, div: Scale | None) -> Array:
        # ``g`` is a fresh matmul output: with one scale it is given away.
        return from_reduced(g if div is None else g / div, kind, xp=xp, fresh=True)

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
            for div in per_chunk:
                k = kernel(g, div)
                total = total + (2.0 * xp.sum(k) - xp.sum(k[:, :width]))
        else:
            g = a[start:stop, :] @ bt
            for div in per_chunk:
                total = total + xp.sum(kernel(g, div))
    return total
