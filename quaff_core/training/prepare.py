"""Make the base to train: calibrate (or reuse) an outlier map and Quaff-convert the model."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from quaff_core.calibration.base_set import base_calibration_examples
from quaff_core.calibration.calibrate import calibrate
from quaff_core.lm.tokenization import PadCollator, TokenizedDataset
from quaff_core.options.base_models import find_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import convert_to_quaff, quaff_layers
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import TrainCallbacks
from quaff_core.training.datasets import tokenize_for
from quaff_core.training.runtime import Runtime

logger = logging.getLogger(__name__)
BASE_MAP_LENGTH = 1024  # the general chat set is tokenised whole


def describe_base(source: str | os.PathLike[str]) -> str:
    """The id recorded for a base model source: the catalog id, else the path or hub id."""
    info = find_base_model(os.fspath(source))
    if info is not None:
        return info.id
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(source)


def calibration_batches(
    dataset: TokenizedDataset, config: TrainConfig, pad_token_id: int
) -> Iterator[dict[str, torch.Tensor]]:
    """The calibration set: the first `calibration_examples` examples, padded, in batches.

    The one builder of calibration batches (trainer, worker, CLI and benchmarks).
    """
    collator = PadCollator(pad_token_id=pad_token_id)
    rows = [dataset[i] for i in range(min(config.calibration_examples, len(dataset)))]
    for start in range(0, len(rows), config.batch_size):
        batch = collator(rows[start : start + config.batch_size])
        yield {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def calibrate_on(
    model: nn.Module,
    dataset: TokenizedDataset,
    config: TrainConfig,
    *,
    pad_token_id: int,
    model_id: str | None,
    callbacks: TrainCallbacks,
) -> OutlierMap:
    """Find outlier channels on the calibration set of a tokenised training set."""

    n = min(config.calibration_examples, len(dataset))
    callbacks.on_event(
        TrainEvent(
            EventKind.CALIBRATING,
            f"Calibrating outlier channels on {n} examples",
            {"examples": n, "strategy": config.outlier_strategy},
        )
    )
    return calibrate(
        model,
        calibration_batches(dataset, config, pad_token_id),
        strategy=config.outlier_strategy,
        threshold=config.outlier_threshold,
        max_ratio=config.outlier_max_ratio,
        model_id=model_id,
    )


def base_calibration_config(config: TrainConfig) -> TrainConfig:
    """The config a base's map is calibrated with: the job's outlier rule, the general chat
    conversations whole (train_on_inputs, independent of the job's max_seq_length), all of them,
    tokenised as the supervised conversations they are whatever the job's method."""
    return replace(
        config,
        method="supervised",
        max_seq_length=BASE_MAP_LENGTH,
        train_on_inputs=True,
        calibration_examples=len(base_calibration_examples()),
    )


def general_calibration_set(
    config: TrainConfig, tokenizer: PreTrainedTokenizerBase
) -> tuple[TrainConfig, TokenizedDataset]:
    """The base's calibration set, tokenised, with `base_calibration_config(config)`."""
    base = base_calibration_config(config)
    return base, tokenize_for(base_calibration_examples(), tokenizer, base, "calibration")


def given_map(
    outlier_map: OutlierMap | str | os.PathLike[str], callbacks: TrainCallbacks
) -> OutlierMap:
    """A map passed in by the caller: an object as it is (its caller knows where it came from),
    a JSON file loaded and reported as reused."""
    if isinstance(outlier_map, OutlierMap):
        return outlier_map
    used = OutlierMap.load(outlier_map)
    callbacks.on_event(
        TrainEvent(
            EventKind.OUTLIER_MAP_REUSED,
            f"Reusing outlier map {os.fspath(outlier_map)} ({used.num_channels} channels)",
            {"channels": used.num_channels, "layers": len(used.layers)},
        )
    )
    return used


def quantize_base(
    model: nn.Module,
    config: TrainConfig,
    dataset: TokenizedDataset,
    *,
    pad_token_id: int,
    outlier_map: OutlierMap | str | os.PathLike[str] | None,
    callbacks: TrainCallbacks,
    model_id: str | None,
    runtime: Runtime,
) -> OutlierMap:
    """Quaff-convert `model` in place with the given map, or one calibrated on `dataset`.

    With a bfloat16 runtime the model is cast to bf16 (attention, norms, head) before calibration,
    whose forward then runs in bf16 as training's does.
    """
    if runtime.dtype == torch.bfloat16:
        model.to(torch.bfloat16)  # before calibration: its forward then runs in bf16 too
    if outlier_map is not None:
        used = given_map(outlier_map, callbacks)
    else:
        used = calibrate_on(
            model,
            dataset,
            config,
            pad_token_id=pad_token_id,
            model_id=model_id,
            callbacks=callbacks,
        )
    convert_to_quaff(
        model,
        used,
        scale_beta=config.scale_beta,
        compute_dtype=runtime.dtype,
        compile=runtime.compile,
    )
    n_layers = len(quaff_layers(model))
    callbacks.on_event(
        TrainEvent(
            EventKind.QUANTIZED,
            f"Quantized {n_layers} linear layers to int8 "
            f"({used.num_channels} outlier channels kept in full precision)",
            {"layers": n_layers, "outlier_channels": used.num_channels},
        )
    )
    return used
