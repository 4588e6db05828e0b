"""PyTorch adapter: the Array-API core registered as a ``torch.autograd.Function``.

Autograd would otherwise record every ``(k, b, N)`` tile of the forward pass
(gigabytes at ``B = 4096``). The function saves only ``z``, ``mu``, ``logvar``,
the outputs and the ``(B, B)`` joint matrix, and its backward recomputes the
tiles with :func:`vaemath._estimators_core.backward`.
"""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp_torch
import torch

from . import _estimators_core as core

__all__ = ["log_aggregate_torch"]


class _LogAggregate(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        z: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        weights: core.LogWeights,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xp = xp_torch
        lq, lqd, joint = core.forward(z, mu, logvar, weights, xp=xp, keep_joint=True)
        ctx.save_for_backward(z, mu, logvar, lq, lqd, joint)
        ctx.weights = weights
        return lq, lqd

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_q: torch.Tensor, grad_qd: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        z, mu, logvar, lq, lqd, joint = ctx.saved_tensors
        xp = xp_torch
        gz, gmu, glv = core.backward(
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
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, weights: core.LogWeights
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log q(z_i), log q(z_id))`` with a memory-bounded backward pass."""
    if torch.is_grad_enabled() and (z.requires_grad or mu.requires_grad or logvar.requires_grad):
        lq, lqd = _LogAggregate.apply(z, mu, logvar, weights)
        return lq, lqd
    lq, lqd, _ = core.forward(z, mu, logvar, weights, xp=xp_torch)
    return lq, lqd
