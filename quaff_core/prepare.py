"""Make the model to train: calibrate (or reuse) an outlier map, convert, add LoRA."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quaff_core.callbacks import TrainCallbacks
from quaff_core.catalog import find_base_model
from quaff_core.config import TrainConfig
from quaff_core.outliers import OutlierMap
from quaff_core.tokenize import PadCollator, TokenizedDataset

logger = logging.getLogger(__name__)


def describe_base(source: str | os.PathLike[str]) -> str:
    """The id recorded for a base model source: the catalog id, else the path or hub id."""
    info = find_base_model(os.fspath(source))
    if info is not None:
        return info.id
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(source)


def calibration_batches(
    dataset: TokenizedDataset, collator: PadCollator, n_examples: int, batch_size: int
) -> Iterator[dict[str, Any]]:
    """The first `n_examples` examples as padded batches of input_ids and attention_mask."""
    rows = [dataset[i] for i in range(min(n_examples, len(dataset)))]
    for start in range(0, len(rows), batch_size):
        batch = collator(rows[start : start + batch_size])
        yield {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def calibrate_on(
    model: nn.Module,
    dataset: TokenizedDataset,
    collator: PadCollator,
    config: TrainConfig,
    *,
    model_id: str | None,
    callbacks: TrainCallbacks,
) -> OutlierMap:
    """Find outlier channels on the first `config.calibration_examples` training examples."""
    from quaff_core.calibration import calibrate

    n = min(config.calibration_examples, len(dataset))
    callbacks.on_event(f"Calibrating outlier channels on {n} examples")
    return calibrate(
        model,
        calibration_batches(dataset, collator, n, config.batch_size),
        strategy=config.outlier_strategy,
        threshold=config.outlier_threshold,
        max_ratio=config.outlier_max_ratio,
        model_id=model_id,
    )


def prepare_model(
    model: nn.Module,
    config: TrainConfig,
    dataset: TokenizedDataset,
    collator: PadCollator,
    *,
    outlier_map: OutlierMap | str | os.PathLike[str] | None,
    callbacks: TrainCallbacks,
    model_id: str | None,
) -> tuple[Any, OutlierMap | None]:
    """Quaff-convert `model` (calibrating unless a map is given) and wrap it with LoRA adapters."""
    from quaff_core.peft import add_lora

    used: OutlierMap | None = None
    if config.quantization == "quaff":
        from quaff_core.convert import convert_to_quaff, quaff_layers

        if isinstance(outlier_map, str | os.PathLike):
            callbacks.on_event(f"Reusing outlier map {os.fspath(outlier_map)}")
            used = OutlierMap.load(outlier_map)
        elif isinstance(outlier_map, OutlierMap):
            callbacks.on_event("Reusing outlier map" + (f" of {used_map_id(outlier_map)}"))
            used = outlier_map
        else:
            used = calibrate_on(
                model, dataset, collator, config, model_id=model_id, callbacks=callbacks
            )
        dtype = torch.bfloat16 if config.compute_dtype == "bfloat16" else None
        if dtype is not None:
            model.to(dtype)  # attention, norms and head run in bf16 too; LoRA stays fp32
        convert_to_quaff(
            model, used, momentum=config.momentum, compute_dtype=dtype, compile=config.compile
        )
        n_layers = len(quaff_layers(model))
        callbacks.on_event(
            f"Quantized {n_layers} linear layers to int8 "
            f"({used.num_channels} outlier channels kept in full precision)"
        )
    elif outlier_map is not None:
        raise ValueError("an outlier map was given but quantization is 'none'; drop one of them")
    # LoRA initialisation draws from the global RNG: `train` seeds it first
    from transformers import set_seed

    set_seed(config.seed)
    targets = config.lora_target_modules
    peft_model = add_lora(
        model,
        r=config.lora_r,
        alpha=config.lora_alpha,
        dropout=config.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
    )
    return peft_model, used


def used_map_id(outlier_map: OutlierMap) -> str:
    """A short description of a map for event messages."""
    return f"{outlier_map.model_id or 'unknown model'} ({outlier_map.num_channels} channels)"
