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
    def forward(
        ctx: Any,
        z: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        weights: LogWeights,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xp = torch_namespace()
        lq, lqd, joint = _tiles.forward(z, mu, logvar, weights, xp=xp, keep_joint=True)
        ctx.save_for_backward(z, mu, logvar, lq, lqd, joint)
        ctx.weights = weights
        return lq, lqd

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_q: torch.Tensor, grad_qd: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        z, mu, logvar, lq, lqd, joint = ctx.saved_tensors
        xp = torch_namespace()
        gz, gmu, glv = _tiles.backward(
            z, mu, logvar, weights=ctx.weights, log_q=lq, log_qd=lqd, joint=joint,
            grad_q=grad_q, grad_qd=grad_qd, xp=xp,
        )  # fmt: skip
        needs = ctx.needs_input_grad
        return (
            gz if needs[0] else None,
            gmu if needs[1] else None,
            glv if needs[2] else None,
            None,
        )


def log_aggregate_torch(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, weights: LogWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log q(z_i), log q(z_id))`` with a memory-bounded backward pass."""
    if torch.is_grad_enabled() and (z.requires_grad or mu.requires_grad or logvar.requires_grad):
        lq, lqd = _LogAggregate.apply(z, mu, logvar, weights)
        return lq, lqd
    lq, lqd, _ = _tiles.forward(z, mu, logvar, weights, xp=torch_namespace())
    return lq, lqd
