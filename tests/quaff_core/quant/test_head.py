"""The frozen head's input gradient through the int8 GEMM: exact against an int8 reference,
close to the float gradient, used by the chunked loss only while the head is frozen and unchanged,
attached by `convert_to_quaff` for training only and never saved with the model."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from quaff_core.adapters.peft_layers import add_lora
from quaff_core.lm.evaluation import batch_counts
from quaff_core.lm.loss import INPUT_GRAD_ATTR, chunked_causal_lm_loss, head_input_grad
from quaff_core.quant.capabilities import Int8Backend, onednn_eight_bit_exact
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.head import Int8HeadGrad, attach_int8_head_grad, int8_head_grads
from quaff_core.quant.onednn import onednn_available
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.primitives import INT8_MAX, quantize_weight

# relative error of the int8 head gradient against float on the peaked softmax gradients below
# (measured 2.0-2.5% at the Qwen2.5 / SmolLM2 head shapes on random data)
GRAD_BUDGET = 0.05


def frozen_head(vocab: int = 97, hidden: int = 32, seed: int = 0) -> nn.Linear:
    """A random head with its weight frozen (as LoRA leaves it)."""
    torch.manual_seed(seed)
    head = nn.Linear(hidden, vocab, bias=False)
    head.weight.requires_grad_(False)
    return head


def softmax_grad(tokens: int, vocab: int, seed: int = 1) -> torch.Tensor:
    """softmax - onehot of peaked random logits: float32 [tokens, vocab]."""
    gen = torch.Generator().manual_seed(seed)
    probs = torch.softmax(3 * torch.randn(tokens, vocab, generator=gen), dim=-1)
    target = torch.randint(0, vocab, (tokens,), generator=gen)
    probs[torch.arange(tokens), target] -= 1.0
    return probs


@pytest.mark.parametrize("backend", ["int_mm", "onednn_s8", "fp32"])
def test_equals_the_exact_int8_product(backend: Int8Backend) -> None:
    """dlogits diag(w_scale) quantized per row, times the int8 weight, exactly."""
    if backend == "onednn_s8" and not (onednn_available() and onednn_eight_bit_exact()):
        pytest.skip("oneDNN's 8-bit weights are exact only with VNNI or AMX")
    head = frozen_head()
    grad = softmax_grad(9, 97)
    got = Int8HeadGrad(head.weight, backend, compile=False)(grad.clone(), torch.float32)
    q_w, w_scale = quantize_weight(head.weight)
    folded = grad * w_scale
    row_scale = folded.abs().amax(dim=1, keepdim=True) / INT8_MAX
    q_g = torch.round(folded / row_scale).clamp(-INT8_MAX, INT8_MAX).to(torch.int64)
    want = (q_g @ q_w.to(torch.int64)).double() * row_scale.double()
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-7)


def test_eager_and_compiled_agree() -> None:
    """The compiled quantize pass gives the eager one's values."""
    head = frozen_head()
    grad = softmax_grad(9, 97)
    eager = Int8HeadGrad(head.weight, "fp32", compile=False)(grad.clone(), torch.float32)
    compiled = Int8HeadGrad(head.weight, "fp32", compile=True)(grad.clone(), torch.float32)
    torch.testing.assert_close(compiled, eager)


def test_close_to_the_float_gradient() -> None:
    head = frozen_head(vocab=4096, hidden=64)
    grad = softmax_grad(32, 4096)
    got = Int8HeadGrad(head.weight, "int_mm", compile=False)(grad.clone(), torch.float32)
    want = grad @ head.weight
    assert float((got - want).norm() / want.norm()) < GRAD_BUDGET


def loss_and_grad(head: nn.Linear, h0: torch.Tensor, labels: torch.Tensor) -> tuple[Any, Any]:
    """The chunked loss of `head` on a leaf copy of h0, and h0's gradient."""
    h = h0.clone().requires_grad_(True)
    loss, _, _ = chunked_causal_lm_loss(h, head, labels, chunk_size=5)
    loss.backward()
    return loss.detach(), h.grad


def test_chunked_loss_uses_it_for_a_frozen_head_only() -> None:
    """Same loss value; the hidden gradient through the int8 head, within budget of the exact one;
    a trainable or modified head falls back to the exact gradient."""
    head = frozen_head(vocab=512, hidden=64)
    torch.manual_seed(2)
    h0 = torch.randn(2, 13, 64)
    labels = torch.randint(0, 512, (2, 13))
    exact_loss, exact_grad = loss_and_grad(head, h0, labels)
    grad_fn = attach_int8_head_grad_to(head)
    assert head_input_grad(head) is grad_fn
    loss, grad = loss_and_grad(head, h0, labels)
    torch.testing.assert_close(loss, exact_loss)
    assert not torch.equal(grad, exact_grad)
    assert float((grad - exact_grad).norm() / exact_grad.norm()) < GRAD_BUDGET
    head.weight.requires_grad_(True)  # a trained head: its weight gradient needs the exact path
    assert head_input_grad(head) is None
    head.weight.requires_grad_(False)
    with torch.no_grad():
        head.weight.mul_(2)  # the weight changed since the copy was made
    assert head_input_grad(head) is None
    _, grad = loss_and_grad(head, h0, labels)
    torch.testing.assert_close(grad, loss_and_grad(detached(head), h0, labels)[1])


def attach_int8_head_grad_to(head: nn.Linear) -> Int8HeadGrad:
    """An exact-backend Int8HeadGrad set on `head`."""
    grad_fn = Int8HeadGrad(head.weight, "fp32", compile=False)
    setattr(head, INPUT_GRAD_ATTR, grad_fn)
    return grad_fn


def detached(head: nn.Linear) -> nn.Linear:
    """A plain copy of `head` with no int8 input gradient."""
    plain = nn.Linear(head.in_features, head.out_features, bias=False)
    plain.weight = nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    return plain


def test_convert_attaches_it_for_training_only(tiny_llama: Any) -> None:
    """On an int8 backend, not on "dequant", not with head_grad=False; never in the state dict."""
    keys = set(tiny_llama.state_dict())
    convert_to_quaff(tiny_llama, OutlierMap(layers={}), backend="fp32", compile=False)
    (grad_fn,) = int8_head_grads(tiny_llama)
    head = tiny_llama.get_output_embeddings()
    assert getattr(head, INPUT_GRAD_ATTR) is grad_fn
    assert grad_fn.weight.shape == head.weight.shape
    assert grad_fn.weight.dtype == torch.int8
    assert not any(INPUT_GRAD_ATTR in k for k in tiny_llama.state_dict())
    assert {k for k in keys if "lm_head" in k} <= set(tiny_llama.state_dict())
    assert attach_int8_head_grad(tiny_llama, backend="dequant") is None


def test_convert_without_head_grad(tiny_llama: Any) -> None:
    convert_to_quaff(tiny_llama, OutlierMap(layers={}), backend="fp32", head_grad=False)
    assert int8_head_grads(tiny_llama) == []


def test_trains_a_lora_model(tiny_llama: Any) -> None:
    """A LoRA step on a converted model runs the head's input gradient through the int8 GEMM and
    the loss goes down."""
    convert_to_quaff(tiny_llama, OutlierMap(layers={}), backend="fp32", compile=False)
    model = add_lora(tiny_llama, r=4, alpha=8)
    model.train()
    head = tiny_llama.get_output_embeddings()
    assert head_input_grad(head) is not None
    torch.manual_seed(0)
    ids = torch.randint(1, 100, (2, 16))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = batch_counts(model, {"input_ids": ids, "labels": ids}).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.1


def test_onednn_s8_keeps_the_pack_not_a_copy_and_repacks_in_a_job_copy() -> None:
    if not (onednn_available() and onednn_eight_bit_exact()):
        pytest.skip("oneDNN's 8-bit weights are exact only with VNNI or AMX")
    head = frozen_head(vocab=300, hidden=64)
    grad = softmax_grad(7, 300)
    packed = Int8HeadGrad(head.weight.detach(), "onednn_s8", compile=False)
    assert packed.weight.numel() == 0  # the pack is the only int8 copy
    assert packed.source.data_ptr() == head.weight.data_ptr()  # the head's own weight
    exact = Int8HeadGrad(head.weight.detach(), "int_mm", compile=False)
    want = exact(grad.clone(), torch.float32)
    assert torch.equal(packed(grad.clone(), torch.float32), want)
    clone = copy.deepcopy(packed)
    assert clone._packs is None
    assert torch.equal(clone(grad.clone(), torch.float32), want)
