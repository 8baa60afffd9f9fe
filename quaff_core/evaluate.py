"""Evaluate a base model or a trained adapter: token-weighted loss and mean token accuracy."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from quaff_core.config import TrainConfig
from quaff_core.tokenize import PadCollator, TokenizedDataset, TrainOnInputs, tokenize_examples

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class EvalResult:
    """Mean next-token loss and accuracy over every labelled token of a dataset."""

    loss: float
    mean_token_accuracy: float
    n_examples: int
    n_tokens: int
    n_truncated: int


def find_adapter_dir(path: str | os.PathLike[str]) -> Path:
    """The adapter directory: `path` itself, or `path/adapter` (a `train` output directory)."""
    base = Path(path)
    for candidate in (base, base / "adapter"):
        if (candidate / "adapter_config.json").is_file() and (
            candidate / ADAPTER_WEIGHTS
        ).is_file():
            return candidate
    raise ValueError(
        f"{os.fspath(path)!r} holds no adapter (adapter_config.json + {ADAPTER_WEIGHTS}); "
        "pass the directory written by `quaff train` or its adapter/ subdirectory"
    )


def load_adapter(model: nn.Module, adapter: str | os.PathLike[str]) -> Any:
    """Rebuild a trained model: Quaff-convert with the adapter's outlier map, add LoRA, load it."""
    from peft import set_peft_model_state_dict

    from quaff_core.convert import convert_to_quaff, load_quaff_state_dict
    from quaff_core.outliers import OutlierMap
    from quaff_core.peft import add_lora

    path = find_adapter_dir(adapter)
    facts = json.loads((path / "quaff.json").read_text()) if (path / "quaff.json").is_file() else {}
    lora = json.loads((path / "adapter_config.json").read_text())
    quantization = facts.get("quantization", {}).get("method", "none")
    if quantization == "quaff":
        outlier_map = OutlierMap.load(path / "outlier_map.json")
        convert_to_quaff(model, outlier_map, momentum=facts["quantization"].get("momentum", 0.9))
    targets = lora["target_modules"]
    peft_model = add_lora(
        model,
        r=int(lora["r"]),
        alpha=int(lora["lora_alpha"]),
        target_modules=sorted(targets) if isinstance(targets, list) else targets,
    )
    result = set_peft_model_state_dict(peft_model, load_file(str(path / ADAPTER_WEIGHTS)))
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"adapter {os.fspath(path)!r} does not fit this base model")
    if quantization == "quaff" and (path / "quaff_momentum.safetensors").is_file():
        load_quaff_state_dict(peft_model, load_file(str(path / "quaff_momentum.safetensors")))
    return peft_model


def _batch_counts(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[float, int, int]:
    """(loss sum, correct, labelled tokens) of one batch."""
    outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = outputs.logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    keep = target != -100
    loss = nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
    correct = int((logits[keep].argmax(dim=-1) == target[keep]).sum())
    return float(loss), correct, int(keep.sum())


def evaluate_dataset(
    model: nn.Module, dataset: TokenizedDataset, *, pad_token_id: int, batch_size: int = 4
) -> EvalResult:
    """Loss and mean token accuracy of `model` on a tokenised dataset (no gradients)."""
    if not len(dataset):
        raise ValueError("the evaluation dataset has no example with a labelled token")
    collate = PadCollator(pad_token_id=pad_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    try:
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
                batch = {k: v.to(device) for k, v in collate(rows).items()}
                batch_loss, batch_correct, batch_total = _batch_counts(model, batch)
                loss_sum, correct, total = (
                    loss_sum + batch_loss,
                    correct + batch_correct,
                    total + batch_total,
                )
    finally:
        model.train(was_training)
    return EvalResult(
        loss=loss_sum / total,
        mean_token_accuracy=correct / total,
        n_examples=len(dataset),
        n_tokens=total,
        n_truncated=dataset.n_truncated,
    )


def evaluate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Any],
    *,
    max_seq_length: int = TrainConfig.max_seq_length,
    train_on_inputs: TrainOnInputs = "auto",
    batch_size: int = 4,
) -> EvalResult:
    """Tokenise examples like training does and evaluate `model` on them."""
    dataset = tokenize_examples(
        examples, tokenizer, max_seq_length=max_seq_length, train_on_inputs=train_on_inputs
    )
    return evaluate_dataset(
        model, dataset, pad_token_id=int(tokenizer.pad_token_id), batch_size=batch_size
    )
