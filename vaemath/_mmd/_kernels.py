r"""The RBF and IMQ kernels: their formula (here only), the distances, the Gram functions.

Both kernels depend on the squared distance :math:`d = \lVert x - y\rVert^2`
through one *reduced distance* :math:`u = d / \mathrm{divisor}`
(:func:`divisor`), and :func:`from_reduced` is the only place that turns
:math:`u` into kernel values:

* ``"rbf"``, bandwidth :math:`h`: divisor :math:`-2h^2`, :math:`k = e^{u} =
  \exp(-d / (2h^2))`;
* ``"imq"``, scale :math:`C`: divisor :math:`C`, :math:`k = 1 / (1 + u) =
  C / (C + d)`.

A sequence of scales is the sum of the kernels, and every term is 1 at
:math:`d = 0` (:func:`diagonal_sum`). The block engine (:mod:`._blocks`) gets
:math:`u` straight out of one matrix product and calls :func:`from_reduced`
with ``fresh=True`` (in place on torch and NumPy); the Gram functions here and
:func:`~vaemath.mmd2_linear` call it on explicit distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._lib._compat import device, is_numpy_namespace, is_torch_namespace
from .._lib._helpers import Array, Namespace, numpy_quiet, resolve
from ._bandwidth import check_samples, fixed_scales

__all__ = [
    "KERNELS",
    "Scale",
    "diagonal_sum",
    "divisor",
    "from_reduced",
    "gram",
    "imq_kernel",
    "pooled_centre",
    "rbf_kernel",
    "squared_distances",
]

KERNELS = ("rbf", "imq")

Scale = Any
"""A kernel scale: a Python float, or a 0-d array (from the median heuristic)."""


# -- the formula ---------------------------------------------------------------------


def divisor(kind: str, scale: Scale) -> Scale:
    """The divisor of the reduced distance ``u = d / divisor``: ``-2 h^2`` (rbf), ``C`` (imq)."""
    return -2.0 * (scale * scale) if kind == "rbf" else scale


def from_reduced(u: Array, kind: str, *, xp: Namespace, fresh: bool = False) -> Array:
    """Kernel values from reduced distances: ``exp(u)`` (rbf), ``1 / (1 + u)`` (imq).

    ``fresh=True`` says that ``u`` is a temporary of the Gram trick that the
    caller gives away. Rounding may have pushed it across 0 (a distance is
    never negative): the generic path clamps it (``u <= 0`` for rbf, ``u >= 0``
    for imq); torch and NumPy overwrite it in place instead and skip the clamp,
    since an exponent rounded to ``+tiny`` gives ``1 + tiny``, an error of the
    order of the rounding of every other entry, so sums are as accurate and one
    memory pass is saved. In-place passes on a fresh matmul output are allowed
    by autograd (``mm`` does not save its output; ``exp_`` / ``reciprocal_``
    save their result).
    """
    if fresh and is_torch_namespace(xp):
        return u.exp_() if kind == "rbf" else u.add_(1.0).reciprocal_()
    if fresh and is_numpy_namespace(xp):
        import numpy as np

        if kind == "rbf":
            return np.exp(u, out=u)
        u += 1.0
        return np.reciprocal(u, out=u)
    if fresh:
        zero = xp.zeros((), dtype=u.dtype, device=device(u))
        u = xp.minimum(u, zero) if kind == "rbf" else xp.maximum(u, zero)
    return xp.exp(u) if kind == "rbf" else 1.0 / (1.0 + u)


def diagonal_sum(n: int, scales: Sequence[Scale]) -> float:
    """``sum_i k(z_i, z_i)`` over ``n`` points: every rbf / imq term is 1 at distance 0."""
    return float(n * len(scales))


def gram(d: Array, kind: str, scales: Sequence[Scale], *, xp: Namespace) -> Array:
    """``sum_s k_s`` elementwise over squared distances ``d`` (any shape, ``d >= 0``)."""
    out = None
    for s in scales:
        k = from_reduced(d / divisor(kind, s), kind, xp=xp)
        out = k if out is None else out + k
    return out


# -- distances -----------------------------------------------------------------------


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


def _gram_matrix(x: Array, y: Array, kind: str, scales: Sequence[Scale], *, xp: Namespace) -> Array:
    """The ``(n, m)`` Gram matrix; an exact 0 distance on the diagonal when ``y is x``."""
    same = y is x
    xc, yc = pooled_centre(x, y, xp=xp)
    d = squared_distances(xc, xc if same else yc, xp=xp)
    if same:
        eye = xp.eye(x.shape[0], dtype=d.dtype, device=device(d))
        d = xp.where(eye > 0, xp.zeros_like(d), d)
    return gram(d, kind, scales, xp=xp)


# -- the public Gram functions ------------------------------------------------------------


@numpy_quiet
def rbf_kernel(x: Array, y: Array, bandwidth: float | Sequence[float]) -> Array:
    r"""Gaussian (RBF) kernel Gram matrix.

    .. math::

        K_{ij} = \sum_s \exp\Bigl(-\frac{\lVert x_i - y_j\rVert^2}{2 h_s^2}\Bigr).

    Parameters
    ----------
    x : array of shape ``(n, D)``
        First sample.
    y : array of shape ``(m, D)``
        Second sample.
    bandwidth : float or sequence of float
        The length scale :math:`h > 0`; a sequence gives the sum of the kernels.

    Returns
    -------
    array of shape ``(n, m)``
        The Gram matrix, in the floating dtype of the inputs.

    Raises
    ------
    ValueError
        If the samples are not 2-D, their feature dimensions differ, or a
        bandwidth is not positive.

    See Also
    --------
    imq_kernel : The inverse multiquadratic kernel.
    mmd2 : MMD² estimates without forming the Gram matrices.

    Notes
    -----
    Squared distances are :math:`\lVert x\rVert^2 + \lVert y\rVert^2 - 2 x y^\top`
    after subtracting the pooled mean (exact in real arithmetic, much less
    cancellation in floating point), clamped at 0. No ``(n, m, D)`` array is
    formed. InfoVAE's kernel (``compute_kernel`` in the authors' code),
    :math:`\exp(-\operatorname{mean}_d (x_d - y_d)^2 / D) = \exp(-\lVert x - y\rVert^2 / D^2)`,
    is ``bandwidth = D / sqrt(2)``.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import rbf_kernel
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0]])
    >>> np.round(rbf_kernel(x, x, 1.0), 6)
    array([[1.      , 0.606531],
           [0.606531, 1.      ]])
    """
    xp, (x, y) = resolve({"x": x, "y": y})
    check_samples({"x": x, "y": y})
    return _gram_matrix(x, y, "rbf", fixed_scales(bandwidth, "bandwidth"), xp=xp)


@numpy_quiet
def imq_kernel(x: Array, y: Array, scale: float | Sequence[float]) -> Array:
    r"""Inverse multiquadratic kernel Gram matrix (the WAE kernel).

    .. math::

        K_{ij} = \sum_s \frac{C_s}{C_s + \lVert x_i - y_j\rVert^2}.

    Parameters
    ----------
    x : array of shape ``(n, D)``
        First sample.
    y : array of shape ``(m, D)``
        Second sample.
    scale : float or sequence of float
        :math:`C > 0`; a sequence gives the sum of the kernels. WAE uses
        ``C = 2 * D * sigma**2`` for a prior of variance ``sigma**2``.

    Returns
    -------
    array of shape ``(n, m)``
        The Gram matrix, in the floating dtype of the inputs.

    Raises
    ------
    ValueError
        If the samples are not 2-D, their feature dimensions differ, or a
        scale is not positive.

    See Also
    --------
    rbf_kernel : The Gaussian kernel.
    mmd2 : MMD² estimates without forming the Gram matrices.

    Examples
    --------
    >>> import numpy as np
    >>> from vaemath import imq_kernel
    >>> x = np.array([[0.0, 0.0], [1.0, 1.0]])
    >>> imq_kernel(x, x, 2.0)
    array([[1. , 0.5],
           [0.5, 1. ]])
    """
    xp, (x, y) = resolve({"x": x, "y": y})
    check_samples({"x": x, "y": y})
    return _gram_matrix(x, y, "imq", fixed_scales(scale, "scale"), xp=xp)
