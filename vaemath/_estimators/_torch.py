"""PyTorch adapter: the Array-API core registered as a ``torch.autograd.Function``.

Autograd would otherwise record every ``(k, b, N)`` tile of the forward pass
(gigabytes at ``B = 4096``). The function saves only ``z``, ``mu``, ``logvar``,
the outputs and the ``(B, B)`` joint matrix, and its backward recomputes the
tiles with :func:`vaemath._estimators__tiles.backward`.
"""

from __future__ import annotations

from typing import Any

import torch

from .._lib._compat import torch_namespace
from . import _tiles
from ._weights import LogWeights

__all__ = ["log_aggregate_torch"]


class _LogAggregate(torch.autograd.Function):
    @staticmethod
    def forward(  # noqa: PLR0917 - autograd.Function.apply is positional
        ctx: Any,
        z: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        weights: LogWeights,
        column_log_weights: torch.Tensor | None,
        with_marginals: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        xp = torch_namespace()
        lq, lqd, joint = _tiles.forward(
            z, mu, logvar, weights, xp=xp, keep_joint=True, with_marginals=with_marginals,
            column_log_weights=column_log_weights,
        )  # fmt: skip
        ctx.save_for_backward(z, mu, logvar, lq, lqd, joint, column_log_weights)
        ctx.weights = weights
        return lq, lqd

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_q: torch.Tensor, grad_qd: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        z, mu, logvar, lq, lqd, joint, column_log_weights = ctx.saved_tensors
        xp = torch_namespace()
        if lqd is not None and grad_qd is None:  # marginals unused downstream
            grad_qd = torch.zeros_like(lqd)
        gz, gmu, glv, gc = _tiles.backward(
            z, mu, logvar, weights=ctx.weights, log_q=lq, log_qd=lqd, joint=joint,
            grad_q=grad_q, grad_qd=grad_qd, xp=xp, column_log_weights=column_log_weights,
        )  # fmt: skip
        needs = ctx.needs_input_grad
        return (
            gz if needs[0] else None,
            gmu if needs[1] else None,
            glv if needs[2] else None,
            None,
            gc if needs[4] else None,
            None,
        )


def log_aggregate_torch(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    weights: LogWeights,
    *,
    column_log_weights: torch.Tensor | None = None,
    with_marginals: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(log q(z_i), log q(z_id))`` with a memory-bounded backward pass."""
    inputs = (z, mu, logvar) if column_log_weights is None else (z, mu, logvar, column_log_weights)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        lq, lqd = _LogAggregate.apply(z, mu, logvar, weights, column_log_weights, with_marginals)
        return lq, lqd
    lq, lqd, _ = _tiles.forward(
        z, mu, logvar, weights, xp=torch_namespace(), with_marginals=with_marginals,
        column_log_weights=column_log_weights,
    )  # fmt: skip
    return lq, lqd
