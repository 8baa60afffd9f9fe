"""Every PEFT method through `train` on tiny-llama: it learns, and the saved adapter rebuilds the
trained model (`load_adapter`), merges (weight methods) or is refused a merge (virtual tokens)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from quaff_core.adapters.loading import adapter_method, attach_adapter, load_adapter
from quaff_core.adapters.merge import merge_adapter
from quaff_core.lm.tokenization import PadCollator, tokenize_examples
from quaff_core.models.loading import load_base_model
from quaff_core.options.spec import PEFT_METHODS
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.train import train
from tests.quaff_core.training.test_train import EXAMPLES, QUAFF, Recorder

# learning rates that move each method within a few steps on tiny-llama
LEARNING_RATES = {
    "lora": 3e-3,
    "ia3": 3e-2,
    "prefix_tuning": 3e-2,
    "prompt_tuning": 3e-2,
    "p_tuning": 3e-3,
}
TYPES = {
    "lora": "LORA",
    "ia3": "IA3",
    "prefix_tuning": "PREFIX_TUNING",
    "prompt_tuning": "PROMPT_TUNING",
    "p_tuning": "P_TUNING",
}


def batch() -> dict[str, torch.Tensor]:
    """Every training example, tokenised as training does, in one padded batch."""
    _model, tokenizer = load_base_model("tiny-llama")
    data = tokenize_examples(EXAMPLES, tokenizer, max_seq_length=64)
    return PadCollator(int(tokenizer.pad_token_id))([data[i] for i in range(len(data))])


def loss_of(model: nn.Module, inputs: dict[str, torch.Tensor]) -> float:
    with torch.no_grad():
        return float(model.eval()(**inputs).loss)


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_method_trains_and_its_adapter_rebuilds_the_model(tmp_path: Path, method: str) -> None:
    config = TrainConfig(
        **{
            **QUAFF.to_dict(),
            "lora_dropout": 0.0,
            "n_epochs": 3,
            "batch_size": 4,
            "peft_method": method,
            "num_virtual_tokens": 4,
            "learning_rate": LEARNING_RATES[method],
        }
    )
    calls = Recorder()
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    assert result.stopped == "completed"
    assert result.adapter_dir is not None
    assert adapter_method(result.adapter_dir) == TYPES[method]
    losses = [e.train_loss for e in calls.progress if e.train_loss is not None]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    inputs = batch()
    fresh = loss_of(load_base_model("tiny-llama")[0], inputs)
    rebuilt = loss_of(load_adapter(load_base_model("tiny-llama")[0], result.adapter_dir), inputs)
    assert rebuilt < fresh  # the trained adapter, on the int8 base rebuilt as trained
    if method in ("lora", "ia3"):
        merged = merge_adapter("tiny-llama", result.adapter_dir, tmp_path / "merged")
        assert (merged / "model.safetensors").is_file()
    else:
        with pytest.raises(ValueError, match="cannot be merged"):
            merge_adapter("tiny-llama", result.adapter_dir, tmp_path / "merged")


def test_only_lora_adapters_share_a_base(tmp_path: Path) -> None:
    quick = TrainConfig(**{**QUAFF.to_dict(), "n_epochs": 1, "quantization": "none"})
    lora = train("tiny-llama", EXAMPLES, tmp_path / "lora", config=quick)
    tuned = TrainConfig(**{**quick.to_dict(), "peft_method": "prompt_tuning"})
    prompt = train("tiny-llama", EXAMPLES, tmp_path / "prompt", config=tuned)
    assert lora.adapter_dir is not None
    assert prompt.adapter_dir is not None
    shared = attach_adapter(load_base_model("tiny-llama")[0], lora.adapter_dir, "a")
    with pytest.raises(ValueError, match="only LoRA adapters share a loaded base"):
        attach_adapter(shared, prompt.adapter_dir, "b")
