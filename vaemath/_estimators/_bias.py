r"""Opt-in jackknife bias correction of the minibatch log-density estimates.

Every estimate is :math:`\ell_i = \log \sum_j t_{ij}`, :math:`t_{ij} = w_{ij}\, q(z_i|x_j)`
(and likewise per dimension). With ``dataset_size`` set the sum is an unbiased
estimate of :math:`q(z_i)`, but :math:`E[\ell_i] < \log q(z_i)` by about
:math:`\mathrm{Var}/(2 q^2) = O(1/B)` (Jensen). The jackknife (Quenouille;
Nowozin 2018 for the same log-of-a-mean problem in IWAE) removes that term:
leave out one of the :math:`n = B - 1` other components :math:`k`, give the
others back their mass :math:`c = \sum_{j \ne i} w_{ij} = (N-1)/N`,

.. math::

    \ell_i^{(-k)} = \log\Bigl(t_{ii} + \frac{c}{c - w_{ik}}
        \sum_{j \ne i, k} t_{ij}\Bigr), \qquad
    \ell_i^{J} = \ell_i - f\,(n - 1)\,\frac1n \sum_{k \ne i}
        \bigl(\ell_i^{(-k)} - \ell_i\bigr),

with the finite-population factor :math:`f = (N - B)/(N - 1)` (the batch is
drawn without replacement: :math:`f = 0` for a batch holding the whole
dataset, whose estimate is exact). Derivation and measurements:
``docs/estimators.rst``, "Bias at small batches".

Numerics. With :math:`p_{ij} = t_{ij}/\sum_j t_{ij}` and the others' share
:math:`s_i = \sum_{j \ne i} p_{ij}`,

.. math::

    \ell_i^{(-k)} - \ell_i = \log1p(u_{ik}), \qquad
    u_{ik} = \frac{w_{ik}}{c - w_{ik}}\, s_i - \frac{c}{c - w_{ik}}\, p_{ik},

which is accurate for every ``k`` except the largest other term ``k*`` (there
``1 + u`` can cancel); that one is computed directly, as a log-sum-exp over
the components other than ``i`` and ``k*``. Each density costs one ``(B, B)``
matrix of log terms from the tile engine (``keep_joint``; per dimension, the
engine on a ``(B, 1)`` slice), so the correction needs ``D + 1`` extra engine
calls and ``O(B^2)`` memory per density (under torch autograd the ``D + 1``
matrices are kept for the backward pass: ``O(B^2 D)``).
"""

from __future__ import annotations

import functools
import math
import operator

from .._gaussian import log_density
from .._lib._compat import device, is_torch_namespace, torch_transformed
from .._lib._helpers import Array, Namespace, check_choice
from . import _tiles
from ._weights import LogWeights

__all__ = ["BIAS_CORRECTIONS", "check_bias_correction", "jackknife_shifts", "log_term_matrices"]

BIAS_CORRECTIONS = ("jackknife",)
"""The opt-in bias corrections of the minibatch estimators (``bias_correction=``)."""


def check_bias_correction(
    bias_correction: object, batch: int, dataset_size: int | None
) -> float | None:
    """The finite-population factor ``f`` of the correction, or ``None`` for none.

    ``dataset_size`` is the checked integer (``None``: the batch mixture). A
    batch holding the whole dataset (``N = B``) gives ``None`` too: its
    estimate is exact and nothing is corrected.
    """
    if bias_correction is None:
        return None
    check_choice("bias_correction", bias_correction, BIAS_CORRECTIONS)
    if dataset_size is None:
        msg = (
            f"`bias_correction={bias_correction!r}` needs `dataset_size`: the batch "
            "mixture (dataset_size=None) is biased mainly through its own component, "
            "not through the logarithm, and the jackknife makes that bias larger "
            "(docs/estimators.rst, 'Bias at small batches')"
        )
        raise ValueError(msg)
    if batch < 3:
        msg = (
            f"`bias_correction={bias_correction!r}` needs a batch of at least 3 samples "
            f"(one own and two other components), got B = {batch}"
        )
        raise ValueError(msg)
    if dataset_size == batch:
        return None
    return (dataset_size - batch) / (dataset_size - 1)


def _wants_graph(*arrays: Array, xp: Namespace) -> bool:
    """Whether torch records (or transforms) operations on these tensors."""
    if not is_torch_namespace(xp):
        return False
    import torch

    grad = torch.is_grad_enabled() and any(a.requires_grad for a in arrays)
    return grad or torch_transformed(*arrays)


class _WeightMatrices:
    """Masks, log weights and the constants of the leave-one-out terms of ``(B, B)`` matrices.

    ``ratio_w = w_ik / (c - w_ik)`` and ``ratio_c = c / (c - w_ik)``, with
    ``c = 1 - w_ii`` the mass of the other components, ``(N - 1) / N``: 0-d
    where every other weight is the same, ``(B, B)`` for MSS.
    """

    def __init__(self, weights: LogWeights, b: int, *, like: Array, xp: Namespace) -> None:
        self.weights, self.xp = weights, xp
        self.dtype, self.dev = like.dtype, device(like)
        self.log_own = weights.log_other if weights.log_own is None else weights.log_own
        c = -math.expm1(self.log_own)
        rows = xp.arange(b, device=self.dev)[:, None]
        self.cols = xp.arange(b, device=self.dev)[None, :]
        self.own = rows == self.cols
        self.zero = self.const(0.0)
        self.neg_inf = self.const(-math.inf)
        w = math.exp(weights.log_other)
        self.ratio_w, self.ratio_c = self.const(w / (c - w)), self.const(c / (c - w))
        self.next = None
        if weights.log_next is not None:
            self.next = self.cols == (rows + 1) % b
            w = math.exp(weights.log_next)
            self.ratio_w = xp.where(self.next, self.const(w / (c - w)), self.ratio_w)
            self.ratio_c = xp.where(self.next, self.const(c / (c - w)), self.ratio_c)

    def const(self, v: float) -> Array:
        return self.xp.asarray(v, dtype=self.dtype, device=self.dev)

    def log_w(self) -> Array:
        """The ``(B, B)`` matrix ``log w_ij``."""
        xp = self.xp
        log_w = xp.where(self.own, self.const(self.log_own), self.const(self.weights.log_other))
        if self.next is not None and self.weights.log_next is not None:
            log_w = xp.where(self.next, self.const(self.weights.log_next), log_w)
        return log_w


def log_term_matrices(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    *,
    xp: Namespace,
    joint: bool = True,
    marginals: bool = True,
) -> list[Array]:
    r"""The ``(B, B)`` matrices :math:`\log w_{ij} + \log q(z_i|x_j)`, joint then per dimension.

    From the tile engine (``keep_joint``; each marginal is the joint of a
    ``(B, 1)`` slice). On torch with gradients, or under a ``torch.func``
    transform, they are built out of place from the elementwise log-density
    instead, so autograd differentiates them.
    """
    if _wants_graph(z, mu, logvar, xp=xp):
        log_w = _WeightMatrices(weights, int(z.shape[0]), like=z, xp=xp).log_w()
        per_dim = [
            log_density(z[:, None, d], mu[None, :, d], logvar[None, :, d], xp=xp)
            for d in range(z.shape[1])
        ]
        out = [functools.reduce(operator.add, per_dim) + log_w] if joint else []
        return out + ([m + log_w for m in per_dim] if marginals else [])

    def matrix(zs: Array, ms: Array, ls: Array) -> Array:
        return _tiles.forward(zs, ms, ls, weights, xp=xp, keep_joint=True, with_marginals=False)[2]

    out = [matrix(z, mu, logvar)] if joint else []
    if marginals:
        out += [matrix(z[:, d : d + 1], mu[:, d : d + 1], logvar[:, d : d + 1])
                for d in range(z.shape[1])]  # fmt: skip
    return out


def _row_logsumexp(x: Array, *, xp: Namespace) -> tuple[Array, Array]:
    """Max-shifted log-sum-exp of each row, and the softmax of the row.

    A row of ``-inf`` gives ``-inf`` and a zero softmax (with zero gradient).
    """
    top = xp.max(x, axis=1, keepdims=True)
    shift = xp.where(xp.isfinite(top), top, xp.zeros_like(top))
    e = xp.exp(x - shift)
    total = xp.sum(e, axis=1, keepdims=True)
    empty = total == 0
    safe = xp.where(empty, xp.ones_like(total), total)
    lse = xp.where(empty, xp.full_like(total, -math.inf), xp.log(safe) + shift)
    return lse[:, 0], e / safe


def _jackknife_shift(
    log_terms: Array, mats: _WeightMatrices, scale: float, *, xp: Namespace
) -> Array:
    """``(B,)`` shifts ``ell^J - ell`` for one ``(B, B)`` matrix of log terms."""
    own, zero = mats.own, mats.zero
    others = xp.where(own, mats.neg_inf, log_terms)
    own_term = xp.sum(xp.where(own, log_terms, zero), axis=1)
    is_top = mats.cols == xp.argmax(others, axis=1)[:, None]  # the largest other term k*
    ell, p = _row_logsumexp(log_terms, xp=xp)
    finite = xp.isfinite(ell)
    ell = xp.where(finite, ell, xp.zeros_like(ell))
    p_others = xp.where(own, zero, p)
    share = xp.sum(p_others, axis=1, keepdims=True)  # s_i
    u = xp.where(is_top | own, zero, mats.ratio_w * share - mats.ratio_c * p_others)
    rest, _ = _row_logsumexp(xp.where(is_top, mats.neg_inf, others), xp=xp)
    top_ratio = mats.ratio_c if mats.next is None else (
        xp.sum(xp.where(is_top, mats.ratio_c, zero), axis=1))  # fmt: skip
    delta_top = xp.logaddexp(own_term - ell, rest + xp.log(top_ratio) - ell)
    total = xp.sum(xp.log1p(u), axis=1) + delta_top
    return xp.where(finite, -scale * total, xp.zeros_like(total))


def jackknife_shifts(
    z: Array,
    mu: Array,
    logvar: Array,
    weights: LogWeights,
    *,
    fpc: float,
    xp: Namespace,
    joint: bool = True,
    marginals: bool = True,
) -> tuple[Array | None, Array | None]:
    r"""Jackknife shifts ``(ell^J_i - ell_i, ell^J_id - ell_id)``: ``(B,)`` and ``(B, D)``.

    ``fpc`` is the finite-population factor ``f`` of
    :func:`check_bias_correction`; ``joint`` / ``marginals`` ``False`` skip that
    part (``None`` comes back). The weights may be any of :mod:`._weights`
    (the batch mixture too, for the study in ``docs/scripts/bias_correction.py``).
    """
    b = int(z.shape[0])
    n = b - 1
    scale = fpc * (n - 1) / n
    mats = log_term_matrices(z, mu, logvar, weights, xp=xp, joint=joint, marginals=marginals)
    consts = _WeightMatrices(weights, b, like=z, xp=xp)
    shifts = [_jackknife_shift(m, consts, scale, xp=xp) for m in mats]
    shift = shifts.pop(0) if joint else None
    shift_d = xp.stack(shifts, axis=1) if marginals else None
    return shift, shift_d
