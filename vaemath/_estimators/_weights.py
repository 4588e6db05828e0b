"""Log mixture weights of the aggregate-posterior estimators (MWS / MSS), and their options.

See ``docs/estimators.rst`` for the derivation of the weights.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .._lib._helpers import check_choice, check_index

__all__ = ["METHODS", "LogWeights", "check_options", "log_weights"]

METHODS = ("mws", "mss")
"""The estimators of ``q(z)`` from a minibatch: minibatch weighted / stratified sampling."""


class LogWeights(NamedTuple):
    """Log mixture weights ``log w_ij`` (Python floats, computed in float64)."""

    log_other: float
    log_own: float | None = None
    log_next: float | None = None

    @property
    def uniform(self) -> bool:
        return self.log_own is None and self.log_next is None


def log_weights(batch: int, dataset_size: int | None, method: str) -> LogWeights:
    """Log mixture weights of the estimate of ``q(z_i) = sum_j w_ij q(z_i | x_j)``.

    ``dataset_size=None``: the batch mixture, ``w_ij = 1/B``. ``dataset_size=N``
    (derivation in ``docs/estimators.rst``): the own component is a known term
    of the dataset mixture, ``w_ii = 1/N``; the other ``N - 1`` points carry
    the mass ``(N - 1)/N``, spread evenly over the ``B - 1`` other samples (MWS)
    or over ``B - 2`` strata of ``N/(B - 1)`` points and one remainder stratum of
    ``(N - B + 1)/(B - 1)`` points (MSS).
    """
    if dataset_size is None:
        return LogWeights(-math.log(batch))
    n = dataset_size
    log_own = -math.log(n)
    if method == "mws":
        if n == batch:
            return LogWeights(-math.log(n))
        return LogWeights(math.log(n - 1) - math.log(n) - math.log(batch - 1), log_own)
    if n == batch:  # the batch is the whole dataset: the exact mixture
        return LogWeights(-math.log(n))
    log_next = math.log(n - batch + 1) - math.log(n) - math.log(batch - 1)
    return LogWeights(-math.log(batch - 1), log_own, log_next)


def check_options(batch: int, dataset_size: object, method: object) -> int | None:
    check_choice("method", method, METHODS)
    if dataset_size is None:
        return None
    if isinstance(dataset_size, float):  # e.g. len(dataset) * 1.0, as PyTorch-VAE passes it
        if not dataset_size.is_integer():
            msg = f"`dataset_size` must be a whole number of points, got {dataset_size!r}"
            raise ValueError(msg)
        dataset_size = int(dataset_size)
    n = check_index("dataset_size", dataset_size, low=1, kind="an integer or None")
    if batch < 2:
        msg = (
            f"a batch of at least 2 samples is needed with `dataset_size` "
            f"(method {method!r}), got B = {batch}"
        )
        raise ValueError(msg)
    if n < batch:
        msg = f"`dataset_size` must be at least the batch size B = {batch}, got {n}"
        raise ValueError(msg)
    return n
