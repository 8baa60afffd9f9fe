"""chunked_causal_lm_loss against the plain full-logits loss: value, accuracy and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from quaff_core.loss import chunked_causal_lm_loss


def full_loss(h: torch.Tensor, head: nn.Linear, labels: torch.Tensor) -> torch.Tensor:
    """HF's shifted mean cross-entropy over all logits."""
    logits = head(h).float()
    return nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("bias", [False, True])
def test_matches_full_loss_and_gradients(chunk_size: int, bias: bool) -> None:
    torch.manual_seed(0)
    head = nn.Linear(32, 97, bias=bias)
    h = torch.randn(3, 11, 32, requires_grad=True)
    labels = torch.randint(0, 97, (3, 11))
    labels[0, :4] = -100
    labels[2, -1] = -100
    loss, correct, n_tokens = chunked_causal_lm_loss(h, head, labels, chunk_size=chunk_size)
    grads = torch.autograd.grad(loss, [h, *head.parameters()])
    expected = full_loss(h, head, labels)
    expected_grads = torch.autograd.grad(expected, [h, *head.parameters()])
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    shifted = labels[:, 1:]
    assert int(n_tokens) == int((shifted != -100).sum())
    hits = (head(h)[:, :-1].argmax(-1) == shifted) & (shifted != -100)
    assert int(correct) == int(hits.sum())


def test_frozen_head_gets_no_gradient_and_bf16_works() -> None:
    torch.manual_seed(1)
    head = nn.Linear(16, 50, bias=False).bfloat16().requires_grad_(False)
    h = torch.randn(2, 9, 16, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 50, (2, 9))
    loss, _, _ = chunked_causal_lm_loss(h, head, labels, chunk_size=4)
    loss.backward()
    assert loss.dtype == torch.float32
    assert head.weight.grad is None
    assert h.grad is not None
    expected = full_loss(h.detach().float(), head.float(), labels)
    torch.testing.assert_close(loss.detach(), expected, rtol=2e-2, atol=2e-2)


def test_rejects_bad_arguments() -> None:
    head = nn.Linear(4, 5)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_causal_lm_loss(torch.randn(1, 3, 4), head, torch.zeros(1, 3).long(), chunk_size=0)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        chunked_causal_lm_loss(torch.randn(1, 3, 4), head, torch.zeros(1, 2).long())
