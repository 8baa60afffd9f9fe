"""Memory-saving causal-LM loss: output head + shifted cross-entropy in chunks of tokens.

`chunked_causal_lm_loss` never holds all logits [tokens, vocab] at once, in forward or backward:
a custom autograd function keeps only the hidden states and recomputes each chunk's logits in
backward (about one extra head matmul). Only labelled tokens (label != -100) are computed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

IGNORE_INDEX = -100


class _ChunkedHeadCrossEntropy(torch.autograd.Function):
    """Sum over tokens of CE(h W^T + b, y), computed chunk by chunk; also counts argmax hits."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden [M, H], weight [V, H], bias [V] | None, targets int64 [M] -> (f32 sum, int64)."""
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.int64, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size]
            y = targets[start : start + chunk_size]
            logits = nn.functional.linear(h, weight, bias).float()
            loss += nn.functional.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=-1) == y).sum()
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.chunk_size = chunk_size
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Recompute each chunk's softmax; grad = (softmax - onehot) * grad_loss."""
        grad_loss = grads[0]
        hidden, weight, bias, targets = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = (
            torch.zeros_like(bias, dtype=torch.float32) if need_b and bias is not None else None
        )
        for start in range(0, hidden.shape[0], ctx.chunk_size):
            h = hidden[start : start + ctx.chunk_size]
            y = targets[start : start + ctx.chunk_size]
            logits = nn.functional.linear(h, weight, bias).float()
            g = torch.softmax(logits, dim=-1)
            g[torch.arange(y.shape[0], device=y.device), y] -= 1.0
            g = (g * grad_loss).to(hidden.dtype)
            if grad_h is not None:
                grad_h[start : start + ctx.chunk_size] = g @ weight
            if grad_w is not None:
                grad_w += (g.t() @ h).float()
            if grad_b is not None:
                grad_b += g.float().sum(dim=0)
        gw = grad_w.to(weight.dtype) if grad_w is not None else None
        gb = grad_b.to(bias.dtype) if grad_b is not None else None
        return grad_h, gw, gb, None, None


def chunked_causal_lm_loss(
    hidden_states: torch.Tensor,
    lm_head: nn.Linear,
    labels: torch.Tensor,
    *,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean next-token CE of lm_head(hidden_states) vs labels shifted by one, in token chunks.

    hidden_states [B, T, H] (final-norm output), labels int64 [B, T] with -100 = ignore.
    Returns (loss: float32 scalar, differentiable; n_correct: int64 scalar, argmax hits on
    labelled tokens; n_tokens: int64 scalar, labelled tokens). Equals HF's shifted mean CE.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if hidden_states.dim() != 3 or labels.shape != hidden_states.shape[:2]:
        raise ValueError(
            f"need hidden_states [B, T, H] and labels [B, T], got "
            f"{tuple(hidden_states.shape)} and {tuple(labels.shape)}"
        )
    if not isinstance(lm_head, nn.Linear):
        raise TypeError(f"lm_head must be an nn.Linear, got {type(lm_head).__name__}")
    h = hidden_states[:, :-1].reshape(-1, hidden_states.shape[-1])
    y = labels[:, 1:].reshape(-1)
    keep = y != IGNORE_INDEX
    h = h[keep]
    y = y[keep]
    n_tokens = keep.sum()
    weight = lm_head.weight.to(h.dtype)
    bias = lm_head.bias.to(h.dtype) if lm_head.bias is not None else None
    loss_sum, correct = _ChunkedHeadCrossEntropy.apply(h, weight, bias, y, chunk_size)
    loss = loss_sum / n_tokens.clamp_min(1).to(loss_sum.dtype)
    return loss, correct, n_tokens
