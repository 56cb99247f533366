"""Gradients of y = x (Q + L R)ᵀ + b without the dense weight: what training on a compressed base needs.

Why a custom autograd function: written as plain torch ops, autograd would save every
dequantized tile of Q for the backward pass, i.e. the dense [out, in] matrix the fused
forward avoids. Here the forward saves only x and the small factors; the backward
re-decodes Q tile by tile (``ops.qlr_matmul_t``):

    ∂/∂x = g (Q + L R) = g Q + (g L) R         g = ∂loss/∂y [M, out]
    ∂/∂L = gᵀ (x Rᵀ)                           [out, r]  (only when L is trainable)
    ∂/∂R = (g L)ᵀ x                            [r, in]   (only when R is trainable)
    ∂/∂b = Σ_rows g

Q never gets a gradient (its codes are integers: QLoRA's frozen base). Packed 4-bit factors
(``--lr-bits 4``) are buffers and get none either. With no gradient needed at all (serving,
``torch.no_grad``) the call goes straight to the fused kernel.
"""

from __future__ import annotations

import torch

from a2d_guard import ops


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


class _QLRFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, left, right, bias, q, left_packed, right_packed):  # x [M, in] -> [M, out]
        lf = left_packed if left_packed is not None else left
        rf = right_packed if right_packed is not None else right
        ctx.q, ctx.left_packed, ctx.right_packed = q, left_packed, right_packed
        ctx.save_for_backward(x, left, right)
        return ops.qlr_matmul(x, q, lf, rf, bias)

    @staticmethod
    def backward(ctx, g):  # g [M, out]
        x, left, right = ctx.saved_tensors
        lf = ctx.left_packed if ctx.left_packed is not None else left
        rf = ctx.right_packed if ctx.right_packed is not None else right
        g = g.contiguous()
        gx = gl = gr = gb = None
        if ctx.needs_input_grad[0]:
            gx = ops.qlr_matmul_t(g, ctx.q, lf, rf)  # [M, in]
        if ctx.needs_input_grad[1]:
            gl = g.T @ (x @ right.T)  # [out, r]
        if ctx.needs_input_grad[2]:
            gr = (g @ left).T @ x  # [r, in]
        if ctx.needs_input_grad[3]:
            gb = g.sum(0)
        return gx, gl, gr, gb, None, None, None


def qlr_linear(x: torch.Tensor, q, left=None, right=None, bias=None) -> torch.Tensor:
    """x (Q + L R)ᵀ + b for a ``QLRLinear``'s parts.  x [..., in] -> [..., out]

    ``left``/``right``: dense tensors (trainable or frozen) or ``PackedMatrix`` (4-bit, frozen);
    None for a rank-0 layer. Differentiable in x, dense L, R and b.
    """
    if not _needs_grad(x, left, right, bias):
        return ops.qlr_matmul(x, q, left, right, bias)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])  # [M, in]
    left_packed = left if left is not None and not isinstance(left, torch.Tensor) else None
    right_packed = right if right is not None and not isinstance(right, torch.Tensor) else None
    dense_l = left if isinstance(left, torch.Tensor) else None
    dense_r = right if isinstance(right, torch.Tensor) else None
    y = _QLRFunction.apply(x2, dense_l, dense_r, bias, q, left_packed, right_packed)
    return y.reshape(*lead, q.rows)
