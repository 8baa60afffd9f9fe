"""calibrate -> convert_to_quaff -> add_lora -> train steps on tiny random HF causal LMs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import transformers
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from quaff_core.adapters.peft_layers import add_lora
from quaff_core.calibration.calibrate import calibrate
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.linear import QuaffLinear

VOCAB = 96
TINY: dict[str, Any] = {"vocab_size": VOCAB, "num_hidden_layers": 2}
DECODER = {**TINY, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
GQA = {**DECODER, "num_key_value_heads": 2}
LLAMA_LIKE = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
FUSED_QKV = {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}

# family -> (config class, config kwargs, the leaf names LoRA must target)
FAMILIES: dict[str, tuple[str, dict[str, Any], set[str]]] = {
    "llama": ("LlamaConfig", GQA, LLAMA_LIKE),
    "mistral": ("MistralConfig", GQA, LLAMA_LIKE),
    "qwen2": ("Qwen2Config", GQA, LLAMA_LIKE),
    "phi3": (
        "Phi3Config",
        {**GQA, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2},
        {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
    ),
    "gemma2": ("Gemma2Config", {**GQA, "head_dim": 16}, LLAMA_LIKE),
    "opt": (
        "OPTConfig",
        {
            **TINY,
            "hidden_size": 64,
            "ffn_dim": 128,
            "num_attention_heads": 4,
            "word_embed_proj_dim": 64,
            "max_position_embeddings": 64,
        },
        {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"},
    ),
    "gpt_neox": ("GPTNeoXConfig", DECODER, FUSED_QKV),
    "falcon": (
        "FalconConfig",
        {**TINY, "hidden_size": 64, "num_attention_heads": 4},
        FUSED_QKV,
    ),
    "gpt2": (
        "GPT2Config",
        {"vocab_size": VOCAB, "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64},
        {"c_attn", "c_proj", "c_fc"},
    ),
}


PLANTED = 7  # an embedding channel scaled up: an outlier in the residual stream


def build(family: str) -> PreTrainedModel:
    """A random tiny causal LM of `family` (seed 0, channel PLANTED x30), fp32, eval mode."""
    config_name, kwargs, _ = FAMILIES[family]
    config = getattr(transformers, config_name)(**kwargs)
    torch.manual_seed(0)
    model: PreTrainedModel = transformers.AutoModelForCausalLM.from_config(config)
    weight = model.get_input_embeddings().weight
    assert isinstance(weight, torch.Tensor)
    with torch.no_grad():
        weight[:, PLANTED] *= 30.0
    return model.eval()


def token_batches(n: int = 2, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Padded batches [2, 16]: the second row's last 4 tokens are padding."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, VOCAB, (2, 16), generator=gen)
        mask = torch.ones_like(ids)
        mask[1, -4:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def linear_leaves(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> dict[str, nn.Module]:
    """Modules of `kinds` by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, kinds)}


def lora_grads(model: nn.Module, part: str) -> dict[str, torch.Tensor]:
    """Gradients of every `lora_A` or `lora_B` weight, by parameter name."""
    return {
        n: p.grad for n, p in model.named_parameters() if f".{part}." in n and p.grad is not None
    }


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor]
) -> float:
    """One AdamW step on the causal-LM loss of `batch` (padding masked); returns the loss."""
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt.zero_grad()
    loss = model(**batch, labels=labels).loss
    loss.backward()
    opt.step()
    return float(loss.detach())


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """||got - expected|| / ||expected||."""
    return float((got - expected).norm() / expected.norm())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_calibrate_convert_lora_train(family: str) -> None:
    model = build(family)
    reference = copy.deepcopy(model)
    head = model.get_output_embeddings()
    targets = linear_leaves(model, (nn.Linear, Conv1D))
    om = calibrate(model, token_batches(), max_ratio=0.05)
    assert set(om.layers) == {n for n, m in targets.items() if m is not head}
    assert any(PLANTED in channels for channels in om.layers.values())
    convert_to_quaff(model, om)
    remaining = linear_leaves(model, (nn.Linear, Conv1D))
    assert list(remaining.values()) == [head]
    batch = token_batches(1, seed=5)[0]
    with torch.no_grad():
        expected = reference(**batch).logits
        got = model(**batch).logits
    assert relative_error(got, expected) <= 0.05  # int8 weights and activations, fp32 reference

    peft_model = add_lora(model, r=4, alpha=8)
    adapted = {n.rpartition(".")[2] for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == FAMILIES[family][2]
    assert all(not hasattr(m, "lora_A") for m in [head])
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    first = train_step(peft_model, opt, batch)
    grads_b = lora_grads(peft_model, "lora_B")
    assert len(grads_b) == len(om.layers)
    assert all(float(g.abs().sum()) > 0 for g in grads_b.values())
    second = train_step(peft_model, opt, batch)  # lora_B is non-zero now: A gets gradients too
    grads_a = lora_grads(peft_model, "lora_A")
    assert all(float(g.abs().sum()) > 0 for g in grads_a.values())
    assert torch.isfinite(torch.tensor([first, second])).all()


def peft_model_of(family: str) -> Any:
    """A tiny fp32 model of `family` with plain PEFT LoRA adapters on every linear."""
    config = LoraConfig(r=4, target_modules="all-linear", fan_in_fan_out=family == "gpt2")
    return get_peft_model(build(family), config)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_converting_a_peft_model_keeps_its_adapters(family: str) -> None:
    peft_model = peft_model_of(family)
    adapters: Callable[[], dict[str, nn.Module]] = lambda: {  # noqa: E731
        n: m for n, m in peft_model.named_modules() if ".lora_" in n and isinstance(m, nn.Linear)
    }
    before = adapters()
    om = calibrate(peft_model, token_batches(), max_ratio=0.05)
    assert not any("lora_" in n or "base_layer" in n for n in om.layers)
    convert_to_quaff(peft_model, om)
    assert adapters() == before  # same modules, not converted
    assert all(p.requires_grad for m in before.values() for p in m.parameters())
    quaff = [m for m in peft_model.modules() if isinstance(m, QuaffLinear)]
    assert len(quaff) == len(om.layers)
    assert all(n.endswith(".base_layer") for n, m in peft_model.named_modules() if m in quaff)
    batch = token_batches(1)[0]
    loss = peft_model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert all(m.weight.grad is not None for n, m in before.items() if ".lora_B." in n)


def test_refuses_to_convert_twice(tiny_llama: PreTrainedModel) -> None:
    om = calibrate(tiny_llama, token_batches(), max_ratio=0.05)
    convert_to_quaff(tiny_llama, om)
    with pytest.raises(ValueError, match="already converted"):
        convert_to_quaff(tiny_llama, om)
