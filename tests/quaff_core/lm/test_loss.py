"""chunked_causal_lm_loss against the plain full-logits loss: value, accuracy and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from quaff_core.lm.loss import chunked_causal_lm_loss


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


class MatmulDtypes(TorchDispatchMode):
    """Records the input dtypes of every matrix product run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[torch.dtype, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm):
            self.seen.append(tuple(a.dtype for a in args if isinstance(a, torch.Tensor)))
        return func(*args, **(kwargs or {}))


def test_autocast_runs_every_head_matmul_in_its_dtype_and_backward_recomputes_none() -> None:
    """Under autocast every head product is bf16, forward and backward alike (backward runs after
    the autocast block has closed), and backward runs no head product at all."""
    torch.manual_seed(2)
    head = nn.Linear(64, 300, bias=False).requires_grad_(False)
    h = torch.randn(2, 40, 64, requires_grad=True)
    labels = torch.randint(0, 300, (2, 40))
    with MatmulDtypes() as forward, torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = chunked_causal_lm_loss(h, head, labels, chunk_size=16)
    with MatmulDtypes() as backward:
        (grad,) = torch.autograd.grad(loss, [h])
    assert forward.seen
    assert all(set(d) == {torch.bfloat16} for d in forward.seen)
    assert backward.seen == []
    assert grad.dtype == torch.float32
    expected = full_loss(h, head, labels)
    (expected_grad,) = torch.autograd.grad(expected, [h])
    torch.testing.assert_close(loss, expected, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(grad, expected_grad, rtol=5e-2, atol=1e-4)


def test_a_label_whose_probability_underflows_keeps_its_exact_loss() -> None:
    head = nn.Linear(2, 3, bias=False).requires_grad_(False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[100.0, 0.0], [0.0, 0.0], [-100.0, 0.0]]))
    h = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # logits 100, 0, -100: p(label 2) = e^-200
    labels = torch.tensor([[0, 2]])
    loss, _, _ = chunked_causal_lm_loss(h, head, labels)
    torch.testing.assert_close(loss, full_loss(h, head, labels))
    assert 199.0 < float(loss) < 201.0


def test_rejects_bad_arguments() -> None:
    head = nn.Linear(4, 5)
    with pytest.raises(ValueError, match="chunk_size"):
        chunked_causal_lm_loss(torch.randn(1, 3, 4), head, torch.zeros(1, 3).long(), chunk_size=0)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        chunked_causal_lm_loss(torch.randn(1, 3, 4), head, torch.zeros(1, 2).long())
