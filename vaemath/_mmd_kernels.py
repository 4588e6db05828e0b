r"""MMD kernels (Gram matrices), their conventions and the shared argument checks.

Conventions (see ``docs/mmd.rst``):

* ``rbf``: :math:`k(x, y) = \\exp(-\\lVert x - y\rVert^2 / (2h^2))`, ``bandwidth = h``.
  InfoVAE's code, :math:`\\exp(-\\lVert x - y\rVert^2 / D^2)`, is ``bandwidth = D / sqrt(2)``.
* ``imq``: :math:`k(x, y) = C / (C + \\lVert x - y\rVert^2)`, ``bandwidth = C``.
  WAE's choice is ``C = 2 * D * sigma**2``.
* A sequence of bandwidths is the *sum* of the kernels (multi-scale).

Gram matrices are computed with the Gram trick after centring on the pooled
mean, never as an ``(n, m, D)`` expansion; the estimators reduce chunk by chunk
(see :mod:`vaemath._mmd_core`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ._lib._compat import device, is_jax_namespace, is_lazy_array, is_torch_namespace
from ._lib._helpers import Array, Namespace, check_choice, numpy_quiet, resolve
from ._mmd_core import pooled_centre, squared_distances

__all__ = ["imq_kernel", "rbf_kernel"]

_KERNELS = ("rbf", "imq")

Bandwidth = float | Sequence[float] | str


# -- validation --------------------------------------------------------------------


def _check_samples(args: dict[str, Array]) -> int:
    """Check that the samples are ``(n, D)`` with one ``D``; return ``D``."""
    dims: dict[str, int] = {}
    for name, value in args.items():
        if value.ndim != 2:
            msg = f"`{name}` must have shape (n, D), got {tuple(value.shape)}"
            raise ValueError(msg)
        dims[name] = value.shape[1]
    if len(set(dims.values())) > 1:
        described = ", ".join(f"`{k}` has D = {v}" for k, v in dims.items())
        msg = f"feature dimensions do not match: {described}"
        raise ValueError(msg)
    return next(iter(dims.values()))


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"`{name}` must be a positive float, got {value!r}"
        raise TypeError(msg)
    if not value > 0 or not math.isfinite(value):
        msg = f"`{name}` must be positive and finite, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _scales(bandwidth: object, name: str = "bandwidth") -> tuple[float, ...] | str:
    """Validate a bandwidth: a positive float, a sequence of them, or "median"."""
    if isinstance(bandwidth, str):
        return check_choice(name, bandwidth, ("median",))
    if isinstance(bandwidth, Sequence):
        if len(bandwidth) == 0:
            msg = f"`{name}` must be a non-empty sequence of positive floats, got {bandwidth!r}"
            raise ValueError(msg)
        return tuple(_check_positive(f"{name}[{i}]", b) for i, b in enumerate(bandwidth))
    return (_check_positive(name, bandwidth),)


def _check_count(name: str, n: int, minimum: int, why: str) -> None:
    if n < minimum:
        msg = f"`{name}` must have at least {minimum} samples {why}, got {n}"
        raise ValueError(msg)


# -- median heuristic ---------------------------------------------------------------


def _stop_gradient(a: Array, *, xp: Namespace) -> Array:
    if is_torch_namespace(xp):
        return a.detach()
    if is_jax_namespace(xp):  # pragma: no cover - jax not installed in CI
        import jax

        return jax.lax.stop_gradient(a)
    return a


def _median_sqdist(z: Array, *, xp: Namespace) -> Array:
    """Median of ``|z_i - z_j|^2`` over the distinct pairs ``i < j`` (a constant).

    Every off-diagonal distance appears twice in the full matrix; the diagonal
    is set to -1 so it sorts first, and the sorted vector is read at
    ``N + 2k`` (the ``k``-th smallest pair distance).
    """
    z = _stop_gradient(z, xp=xp)
    n = z.shape[0]
    d = squared_distances(z, z, xp=xp)
    eye = xp.eye(n, dtype=d.dtype, device=device(d))
    d = xp.where(eye > 0, -xp.ones_like(d), d)
    v = xp.sort(xp.reshape(d, (-1,)))
    pairs = n * (n - 1) // 2
    k = (pairs - 1) // 2
    if pairs % 2:
        return v[n + 2 * k]
    return 0.5 * (v[n + 2 * k] + v[n + 2 * k + 2])


def _resolve_scales(
    scales: tuple[float, ...] | str, kind: str, pooled: Callable[[], Array], *, xp: Namespace
) -> list[Any]:
    """Turn "median" into the kernel's scale: ``h = sqrt(med)`` (rbf), ``C = med`` (imq)."""
    if scales != "median":
        return list(scales)
    med = _median_sqdist(pooled(), xp=xp)
    _check_median(med, xp=xp)
    return [xp.sqrt(med) if kind == "rbf" else med]


def _check_median(med: Array, *, xp: Namespace) -> None:
    """A zero median distance would be a zero bandwidth: ``ValueError`` (eager only).

    NaN (from NaN samples) passes, so NaN in gives NaN out. Under tracing
    (``torch.compile``, ``jax.jit``) or on lazy arrays the value is not known
    and is not checked: a zero median there gives NaN, never a finite number.
    """
    if is_torch_namespace(xp):
        import torch

        if torch.compiler.is_compiling():
            return
    elif is_jax_namespace(xp):
        import jax

        if isinstance(med, jax.core.Tracer):
            return
    elif is_lazy_array(med):
        return
    if float(med) == 0.0:
        msg = (
            'the median heuristic (bandwidth="median") gave a zero bandwidth: '
            "all pairwise distances of the pooled samples are zero"
        )
        raise ValueError(msg)


def _kernel_distances(x: Array, y: Array, *, xp: Namespace) -> Array:
    """Squared distances for a returned Gram matrix; an exact 0 diagonal when ``y is x``."""
    same = y is x
    xc, yc = pooled_centre(x, y, xp=xp)
    d = squared_distances(xc, xc if same else yc, xp=xp)
    if same:
        eye = xp.eye(x.shape[0], dtype=d.dtype, device=device(d))
        d = xp.where(eye > 0, xp.zeros_like(d), d)
    return d


# -- kernels ------------------------------------------------------------------------


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
    formed. The InfoVAE authors' kernel, :math:`\exp(-\operatorname{mean}_d
    (x_d - y_d)^2 / D) = \exp(-\lVert x - y\rVert^2 / D^2)`, is
    ``bandwidth = D / sqrt(2)``.

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
    _check_samples({"x": x, "y": y})
    scales = _scales(bandwidth)
    if isinstance(scales, str):
        msg = '`bandwidth` must be a positive float or a sequence of them; "median" is mmd2 only'
        raise ValueError(msg)
    d = _kernel_distances(x, y, xp=xp)
    out = xp.exp(d * (-0.5 / scales[0] ** 2))
    for h in scales[1:]:
        out = out + xp.exp(d * (-0.5 / h**2))
    return out


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
    _check_samples({"x": x, "y": y})
    scales = _scales(scale, "scale")
    if isinstance(scales, str):
        msg = '`scale` must be a positive float or a sequence of them; "median" is mmd2 only'
        raise ValueError(msg)
    d = _kernel_distances(x, y, xp=xp)
    out = scales[0] / (scales[0] + d)
    for c in scales[1:]:
        out = out + c / (c + d)
    return out
