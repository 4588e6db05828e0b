"""PyTorch adapter: the Array-API core registered as a ``torch.autograd.Function``.

Autograd would otherwise record every ``(k, b, N)`` tile of the forward pass
(gigabytes at ``B = 4096``). The function saves only ``z``, ``mu``, ``logvar``,
the outputs and the ``(B, B)`` joint matrix, and its backward recomputes the
tiles with :func:`vaemath._estimators__tiles.backward`.
"""

from __future__ import annotations

from typing import Any

import torch

from .._lib._compat import torch_namespace, torch_transformed
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
    def backward(
        ctx: Any, grad_q: torch.Tensor, grad_qd: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        z, mu, logvar, lq, lqd, joint, column_log_weights = ctx.saved_tensors
        xp = torch_namespace()
        if lqd is not None and grad_qd is None:  # marginals unused downstream
            grad_qd = torch.zeros_like(lqd)
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():
            # create_graph=True (double backward): differentiate the out-of-place
            # forward of the saved inputs instead, so the gradient has a graph.
            return _differentiable_backward(ctx, z, mu, logvar, column_log_weights, grad_q, grad_qd)
        gz, gmu, glv, gc = _tiles.backward(
            z, mu, logvar, weights=ctx.weights, log_q=lq, log_qd=lqd, joint=joint,
            grad_q=grad_q, grad_qd=grad_qd, xp=xp, column_log_weights=column_log_weights,
        )  # fmt: skip
        return (
            gz if needs[0] else None,
            gmu if needs[1] else None,
            glv if needs[2] else None,
            None,
            gc if needs[4] else None,
            None,
        )


def _differentiable_backward(  # noqa: PLR0917 - private, one caller
    ctx: Any,
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    column_log_weights: torch.Tensor | None,
    grad_q: torch.Tensor,
    grad_qd: torch.Tensor | None,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients with a graph (for second derivatives): autograd of the functional forward."""
    needs = ctx.needs_input_grad
    inputs = [(z, 0), (mu, 1), (logvar, 2), (column_log_weights, 4)]
    wanted = [t for t, i in inputs if t is not None and needs[i]]
    lq, lqd, _ = _tiles.forward(
        z, mu, logvar, ctx.weights, xp=torch_namespace(), with_marginals=grad_qd is not None,
        column_log_weights=column_log_weights, functional=True,
    )  # fmt: skip
    outputs = [lq] if lqd is None or grad_qd is None else [lq, lqd]
    upstream = [grad_q] if len(outputs) == 1 else [grad_q, grad_qd]
    grads = iter(
        torch.autograd.grad(outputs, wanted, upstream, create_graph=True, allow_unused=True)
    )
    result: list[torch.Tensor | None] = [None] * 6
    for t, i in inputs:
        if t is not None and needs[i]:
            result[i] = next(grads)
    return tuple(result)


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
    if torch_transformed(*inputs):
        # Forward-mode AD and torch.func (grad, vmap, jvp) differentiate the
        # operations: the out-of-place forward, without the bounded-memory backward.
        lq, lqd, _ = _tiles.forward(
            z, mu, logvar, weights, xp=torch_namespace(), with_marginals=with_marginals,
            column_log_weights=column_log_weights, functional=True,
        )  # fmt: skip
        return lq, lqd
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        lq, lqd = _LogAggregate.apply(z, mu, logvar, weights, column_log_weights, with_marginals)
        return lq, lqd
    lq, lqd, _ = _tiles.forward(
        z, mu, logvar, weights, xp=torch_namespace(), with_marginals=with_marginals,
        column_log_weights=column_log_weights,
    )  # fmt: skip
    return lq, lqd
