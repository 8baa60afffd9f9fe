"""Memory-saving causal-LM loss: output head + shifted cross-entropy in chunks of tokens.

`chunked_causal_lm_loss` never holds all logits [tokens, vocab] at once, in forward or backward.
When a gradient is wanted, each chunk's gradient (softmax - onehot) goes through the head in the
forward pass already, so nothing is recomputed and only [tokens, hidden] is kept for backward
(which then just scales it by the incoming gradient). One fused softmax per chunk gives both the
loss and that gradient. Only labelled tokens (label != -100) are computed. The head matmuls run in
autocast's dtype where autocast is on (else in the hidden states' dtype); softmax in float32.

A frozen head may carry a `HeadInputGrad` (attribute `INPUT_GRAD_ATTR`, e.g. Quaff's int8 copy of
the head, `quaff_core.quant.head`): the input gradient dlogits @ W, the largest GEMM of a step at
large vocabularies, then goes through it; the logits (and so the loss) stay exact.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn

from quaff_core.lm.scratch import scratch_buffer

IGNORE_INDEX = -100
_TINY = torch.finfo(torch.float32).tiny  # below this a label's probability has underflowed
INPUT_GRAD_ATTR = "quaff_input_grad"  # the attribute of a head that holds its HeadInputGrad


class HeadInputGrad(Protocol):
    """Computes a frozen head's input gradient dlogits @ W some cheaper way than the exact GEMM."""

    def serves(self, weight: torch.Tensor) -> bool:
        """Whether this was made from `weight` as it is now (same tensor, not modified since)."""
        ...

    def __call__(self, grad_logits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """grad_logits float32 [M, V] (may be overwritten) -> dlogits @ W [M, H] in `dtype`."""
        ...


def head_input_grad(lm_head: nn.Linear) -> HeadInputGrad | None:
    """The `HeadInputGrad` attached to `lm_head` when it still matches the head's weight."""
    fn: HeadInputGrad | None = getattr(lm_head, INPUT_GRAD_ATTR, None)
    return fn if fn is not None and fn.serves(lm_head.weight) else None


def _matmul_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a linear layer on `t` runs in here: autocast's where it is on, else t's own."""
    kind = t.device.type
    if torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return t.dtype


def _softmax_f32(logits: torch.Tensor) -> torch.Tensor:
    """float32 softmax over the last dim of logits [M, V]; on CPU worked in place in this
    thread's scratch buffer (valid until the next call): a fresh [64, 151 936] float32 is 39 MB
    of page faults per chunk, which made the softmax 3-4x slower."""
    if logits.device.type != "cpu":
        return torch.softmax(logits, dim=-1, dtype=torch.float32)
    probs = scratch_buffer(logits.shape, torch.float32, logits.device, "head softmax")
    probs.copy_(logits)
    out: torch.Tensor = torch.ops.aten._softmax.out(probs, -1, False, out=probs)
    return out


def _label_nll(
    logits: torch.Tensor, p_y: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """-log p(y) per row (rows = arange(len(y))) from the float32 softmax's `p_y`; rows whose
    p(y) underflowed (a loss above ~87) are computed exactly from their logits instead."""
    nll = -torch.log(p_y.clamp_min(_TINY))
    small = p_y < 1e-30
    if bool(small.any()):
        exact = logits[small].float()
        nll[small] = torch.logsumexp(exact, dim=-1) - exact[rows[: exact.shape[0]], y[small]]
    return nll


class _ChunkedHeadCrossEntropy(torch.autograd.Function):
    """Sum over tokens of CE(h W^T + b, y), computed chunk by chunk; also counts argmax hits
    (a label tied for the top probability counts as one)."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        chunk_size: int,
        input_grad: HeadInputGrad | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden [M, H], weight [V, H], bias [V] | None (in the matmul dtype), targets int64 [M]
        -> (f32 sum, int64); `input_grad` computes the gradient of `hidden` when only it is
        wanted (a frozen head)."""
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if need_w or need_b:
            input_grad = None
        dtype = weight.dtype
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = (
            torch.zeros_like(bias, dtype=torch.float32) if need_b and bias is not None else None
        )
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.int64, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            h = hidden[start : start + chunk_size].to(dtype)
            y = targets[start : start + chunk_size]
            rows = torch.arange(y.shape[0], device=y.device)
            logits = nn.functional.linear(h, weight, bias)
            probs = _softmax_f32(logits)
            p_y = probs[rows, y]
            # a hit: the label's probability is the largest (softmax keeps the order); amax is
            # ~17x faster than argmax on CPU; an exact tie for the top also counts as a hit
            correct += (p_y >= probs.amax(dim=-1)).sum()
            loss += _label_nll(logits, p_y, y, rows).sum()
            if grad_h is None and grad_w is None and grad_b is None:
                continue
            probs[rows, y] -= 1.0  # d(sum CE)/d(logits)
            if input_grad is not None and grad_h is not None:
                grad_h[start : start + chunk_size] = input_grad(probs, dtype)
                continue
            g = probs.to(dtype)
            if grad_h is not None:
                grad_h[start : start + chunk_size] = g @ weight
            if grad_w is not None:
                grad_w += (g.t() @ h).float()
            if grad_b is not None:
                grad_b += probs.sum(dim=0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """The forward pass's gradients scaled by the incoming one (a scalar)."""
        grad_loss = grads[0]
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return (
            grad_h * grad_loss.to(grad_h.dtype) if grad_h is not None else None,
            grad_w * grad_loss if grad_w is not None else None,
            grad_b * grad_loss if grad_b is not None else None,
            None,
            None,
            None,
        )


def chunked_causal_lm_loss(
    hidden_states: torch.Tensor,
    lm_head: nn.Linear,
    labels: torch.Tensor,
    *,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean next-token CE of lm_head(hidden_states) vs labels shifted by one, in token chunks.

    hidden_states [B, T, H] (final-norm output), labels int64 [B, T] with -100 = ignore.
    Returns (loss: float32 scalar, differentiable; n_correct: int64 scalar, argmax hits on
    labelled tokens, a label tied for the top counting as one; n_tokens: int64 scalar, labelled
    tokens). Equals HF's shifted mean CE.
    A `HeadInputGrad` attached to a frozen `lm_head` computes the hidden states' gradient.
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
    dtype = _matmul_dtype(h)  # cast the head once, to the dtype its matmuls run in
    weight = lm_head.weight.to(dtype)
    bias = lm_head.bias.to(dtype) if lm_head.bias is not None else None
    loss_sum, correct = _ChunkedHeadCrossEntropy.apply(
        h, weight, bias, y, chunk_size, head_input_grad(lm_head)
    )
    loss = loss_sum / n_tokens.clamp_min(1).to(loss_sum.dtype)
    return loss, correct, n_tokens
