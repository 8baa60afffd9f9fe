"""Tests of evaluation and of rebuilding a trained model from its adapter directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from quaff_core.adapters.loading import find_adapter_dir, load_adapter
from quaff_core.data.jsonl import Example, Message
from quaff_core.lm.evaluation import evaluate
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.train import train

EXAMPLES = [
    Example("chat", i + 1, messages=(Message("user", f"Say {i}"), Message("assistant", f"{i}!")))
    for i in range(8)
]


@pytest.mark.parametrize("quantization", ["quaff", "none"])
def test_adapter_reloads_to_the_trained_model(tmp_path: Path, quantization: str) -> None:
    config = TrainConfig(
        batch_size=4,
        learning_rate=3e-3,
        max_seq_length=48,
        lora_r=4,
        max_steps=3,
        quantization=quantization,  # type: ignore[arg-type]
        outlier_strategy="top_abs",
        outlier_max_ratio=0.05,
    )
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, validation_data=EXAMPLES[:4])
    final = result.metrics[-1]
    base, tokenizer = load_base_model("tiny-llama")
    untrained = evaluate(base, tokenizer, EXAMPLES[:4], max_seq_length=48)
    # a bf16 run (compute_dtype auto on a CPU with native bf16) validated in bf16 under
    # autocast: the reload is evaluated the same way, on the model as training cast it (a Quaff
    # base is cast to bf16 before conversion; an unquantized base keeps float32 weights)
    bf16 = result.runtime is not None and result.runtime.compute_dtype == "bfloat16"
    if bf16 and quantization == "quaff":
        torch.nn.Module.to(base, torch.bfloat16)
    model = load_adapter(base, tmp_path)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        got = evaluate(model, tokenizer, EXAMPLES[:4], max_seq_length=48)
    # bf16: the same computation up to bf16 rounding in a different op order (measured 1.7e-4)
    assert got.loss == pytest.approx(final["valid_loss"], abs=5e-4 if bf16 else 1e-4)
    assert got.mean_token_accuracy == pytest.approx(final["valid_mean_token_accuracy"])
    assert got.loss < untrained.loss
    assert got.n_examples == 4
    assert got.n_tokens == untrained.n_tokens > 0


def test_find_adapter_dir_accepts_the_output_or_adapter_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no adapter"):
        find_adapter_dir(tmp_path)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    assert find_adapter_dir(tmp_path) == adapter
    assert find_adapter_dir(adapter) == adapter
