r"""Argument checks of the MMD functions, and the bandwidth: parsing and the median heuristic.

One home for: the sample-shape and sample-count checks, the positivity checks
of bandwidths and scales, the rejection of ``"median"`` outside
:func:`~vaemath.mmd2` and :func:`~vaemath.mmd2_gaussian_prior`, and the median
heuristic (:func:`resolve_scales`) with its check that the median is positive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .._lib._compat import (
    array_namespace,
    device,
    is_jax_namespace,
    is_lazy_array,
    is_torch_namespace,
)
from .._lib._helpers import Array, Namespace, check_choice

__all__ = [
    "Bandwidth",
    "check_count",
    "check_samples",
    "fixed_scales",
    "parse_scales",
    "readable",
    "resolve_scales",
]

Bandwidth = float | Sequence[float] | str

Distances = Callable[..., Array]
"""``(a, b, *, xp) -> (len(a), len(b))`` squared distances (``_kernels.squared_distances``)."""


# -- samples -------------------------------------------------------------------------


def check_samples(args: dict[str, Array]) -> int:
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


def check_count(name: str, n: int, minimum: int, why: str) -> None:
    """Check that sample ``name`` has at least ``minimum`` rows."""
    if n < minimum:
        msg = f"`{name}` must have at least {minimum} samples {why}, got {n}"
        raise ValueError(msg)


# -- bandwidths ------------------------------------------------------------------------


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"`{name}` must be a positive float, got {value!r}"
        raise TypeError(msg)
    if not value > 0 or not math.isfinite(value):
        msg = f"`{name}` must be positive and finite, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _array_scales(bandwidth: Any, name: str) -> tuple[Any, ...]:
    """A 0-d or 1-d array bandwidth (e.g. a learnable torch parameter): its elements.

    Indexing keeps them in the graph, so a learnable bandwidth gets its
    gradient. Positivity is checked where the values can be read (not while
    tracing).
    """
    if bandwidth.ndim > 1 or (bandwidth.ndim == 1 and bandwidth.shape[0] == 0):
        shape = tuple(bandwidth.shape)
        msg = f"`{name}` as an array must be 0-d or a non-empty 1-d array, got shape {shape}"
        raise ValueError(msg)
    xp = array_namespace(bandwidth)
    if not xp.isdtype(bandwidth.dtype, "real floating"):
        msg = f"`{name}` must be a real floating array, got dtype {bandwidth.dtype}"
        raise TypeError(msg)
    if readable(bandwidth, xp=xp):
        positive = xp.all(xp.isfinite(bandwidth) & (bandwidth > 0))
        if not bool(positive):
            msg = f"`{name}` must be positive and finite, got {bandwidth!r}"
            raise ValueError(msg)
    if bandwidth.ndim == 0:
        return (bandwidth,)
    return tuple(bandwidth[i] for i in range(bandwidth.shape[0]))


def parse_scales(bandwidth: object, name: str = "bandwidth") -> tuple[Any, ...] | str:
    """Validate a bandwidth: a positive float, a sequence of them, a 0-d/1-d array or "median"."""
    if isinstance(bandwidth, str):
        return check_choice(name, bandwidth, ("median",))
    if (
        hasattr(bandwidth, "ndim")
        and hasattr(bandwidth, "dtype")
        and not isinstance(bandwidth, (int, float))
    ):
        return _array_scales(bandwidth, name)
    if isinstance(bandwidth, Sequence):
        if len(bandwidth) == 0:
            msg = f"`{name}` must be a non-empty sequence of positive floats, got {bandwidth!r}"
            raise ValueError(msg)
        return tuple(_check_positive(f"{name}[{i}]", b) for i, b in enumerate(bandwidth))
    return (_check_positive(name, bandwidth),)


def fixed_scales(bandwidth: object, name: str) -> tuple[Any, ...]:
    """:func:`parse_scales` without the median heuristic (Gram functions, linear estimator)."""
    scales = parse_scales(bandwidth, name)
    if isinstance(scales, str):
        msg = (
            f'`{name}` must be a positive float or a sequence of them; "median" is '
            "accepted by mmd2 and mmd2_gaussian_prior only"
        )
        raise ValueError(msg)
    return scales


# -- the median heuristic ---------------------------------------------------------------


def _stop_gradient(a: Array, *, xp: Namespace) -> Array:
    if is_torch_namespace(xp):
        return a.detach()
    if is_jax_namespace(xp):  # pragma: no cover - exercised only where jax is installed
        import jax

        return jax.lax.stop_gradient(a)
    return a


def readable(a: Array, *, xp: Namespace) -> bool:
    """Whether ``bool(a)`` can run: False under torch.compile / jax.jit tracing and on meta."""
    if is_torch_namespace(xp):
        import torch

        return not torch.compiler.is_compiling() and a.device.type != "meta"
    if is_jax_namespace(xp):  # pragma: no cover - exercised only where jax is installed
        import jax

        return not isinstance(a, jax.core.Tracer)
    return not is_lazy_array(a)


def _median_sqdist(z: Array, distances: Distances, *, xp: Namespace) -> Array:
    """Median of ``|z_i - z_j|^2`` over the distinct pairs ``i < j`` (a constant).

    Every off-diagonal distance appears twice in the full matrix; the diagonal
    is set to -1 so it sorts first, and the sorted vector is read at
    ``N + 2k`` (the ``k``-th smallest pair distance).
    """
    n = z.shape[0]
    if n < 2:
        msg = f'`bandwidth="median"` needs at least 2 points in the pooled sample, got {n}'
        raise ValueError(msg)
    z = _stop_gradient(z, xp=xp)
    d = distances(z, z, xp=xp)
    eye = xp.eye(n, dtype=d.dtype, device=device(d))
    d = xp.where(eye > 0, -xp.ones_like(d), d)
    v = xp.sort(xp.reshape(d, (-1,)))
    pairs = n * (n - 1) // 2
    k = (pairs - 1) // 2
    if pairs % 2:
        return v[n + 2 * k]
    return 0.5 * (v[n + 2 * k] + v[n + 2 * k + 2])


def resolve_scales(
    scales: tuple[float, ...] | str,
    kind: str,
    pooled: Callable[[], Array],
    *,
    distances: Distances,
    xp: Namespace,
) -> list[Any]:
    """Turn "median" into the kernel's scale: ``h = sqrt(M)`` (rbf), ``C = M`` (imq).

    ``pooled`` returns the sample the median is taken over (called only for
    "median"). A median of 0 (at least half of the pairs coincide) would give
    a zero bandwidth, so NaN: on eager arrays it raises ``ValueError``; where
    the value cannot be read (torch.compile, jax.jit, torch's meta device) it
    is replaced by NaN, so that the estimate is NaN rather than a finite
    number. A NaN median (NaN in the inputs) is kept: NaN in, NaN out.
    """
    if scales != "median":
        return list(scales)
    med = _median_sqdist(pooled(), distances, xp=xp)
    if not readable(med, xp=xp):
        med = xp.where(med > 0, med, xp.full_like(med, math.nan))
    elif bool(med <= 0):
        msg = (
            '`bandwidth="median"`: the median squared distance between the points is 0 '
            "(at least half of the pairs coincide), which gives a zero bandwidth; "
            "pass a positive float instead"
        )
        raise ValueError(msg)
    return [xp.sqrt(med) if kind == "rbf" else med]
