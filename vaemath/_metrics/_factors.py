"""Ground-truth factor labels: validation, integer codes and plug-in entropies (host NumPy).

Labels are compared for equality only, so they are reduced once to codes
``0 .. A_k - 1`` per factor (``np.unique``); everything downstream works on
those codes. Labels are small integer data: they live on the host even when
the encodings are on an accelerator.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._lib._compat import array_namespace, is_numpy_array
from .._lib._helpers import Namespace, to_numpy

__all__ = ["FactorCodes", "factor_codes", "plugin_entropy", "plugin_mutual_information"]


class FactorCodes(NamedTuple):
    """Per-factor integer codes of the labels."""

    codes: np.ndarray  # (N, K) int64, column k in 0 .. A_k - 1
    sizes: tuple[int, ...]  # A_k, the number of distinct values of each factor


def factor_codes(factors: Any, n: int, *, xp: Namespace) -> FactorCodes:
    """Check ``factors`` (``(N, K)`` integer-valued labels) and reduce each column to codes."""
    if not (is_numpy_array(factors) or _same_library(factors, xp)):
        msg = (
            "`factors` must be a NumPy array or an array of the same library as `mu`, "
            f"got {type(factors).__module__}.{type(factors).__name__}"
        )
        raise TypeError(msg)
    labels = to_numpy(factors)
    if labels.ndim != 2:
        msg = f"`factors` must have shape (N, K), got {labels.shape} (one factor: factors[:, None])"
        raise ValueError(msg)
    if labels.shape[0] != n:
        msg = f"`factors` must have one row per encoded point, N = {n}, got shape {labels.shape}"
        raise ValueError(msg)
    if labels.shape[1] < 1:
        msg = f"`factors` must have at least one factor column, got shape {labels.shape}"
        raise ValueError(msg)
    kind = labels.dtype.kind
    if kind == "f":
        integral = np.isfinite(labels) & (labels == np.round(labels))
        if not bool(np.all(integral)):
            bad = labels[~integral][:3].tolist()
            msg = (
                "floating `factors` must hold integral values (labels are compared for "
                f"equality), got e.g. {bad}"
            )
            raise ValueError(msg)
    elif kind not in "biu":
        msg = f"`factors` must have an integer (or integral floating) dtype, got {labels.dtype}"
        raise ValueError(msg)
    codes = np.empty(labels.shape, dtype=np.int64)
    sizes = []
    for k in range(labels.shape[1]):
        values, codes[:, k] = np.unique(labels[:, k], return_inverse=True)
        sizes.append(int(values.shape[0]))
    return FactorCodes(codes, tuple(sizes))


def _same_library(x: Any, xp: Namespace) -> bool:
    try:
        return array_namespace(x).__name__ == xp.__name__
    except TypeError:
        return False


def plugin_entropy(codes: np.ndarray) -> float:
    r"""Plug-in entropy (nats) of integer codes: :math:`-\sum_a \hat p_a \log \hat p_a`."""
    counts = np.bincount(codes).astype(np.float64)
    counts = counts[counts > 0]
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def plugin_mutual_information(a: np.ndarray, b: np.ndarray, size_b: int) -> float:
    r"""Plug-in mutual information (nats) of two code vectors, from their contingency table.

    .. math::

        \hat I = \sum_{uv} \frac{n_{uv}}{n} \log \frac{n\, n_{uv}}{n_u n_v},

    the quantity of scikit-learn's ``mutual_info_score``; ``b`` holds codes in
    ``0 .. size_b - 1``.
    """
    n = a.shape[0]
    table = np.bincount(a.astype(np.int64) * size_b + b, minlength=(int(a.max()) + 1) * size_b)
    table = table.reshape(-1, size_b).astype(np.float64)
    row = table.sum(axis=1, keepdims=True)
    col = table.sum(axis=0, keepdims=True)
    nz = table > 0
    outer = (row * col)[nz]
    joint = table[nz]
    return float(np.sum(joint / n * (np.log(joint) + np.log(n) - np.log(outer))))
