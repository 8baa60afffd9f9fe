"""Make the model to train: tokenise, calibrate (or reuse) an outlier map, convert, add PEFT."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, set_seed

from quaff_core.adapters.peft_layers import add_adapter
from quaff_core.calibration.calibrate import calibrate
from quaff_core.data.examples import chosen_view, prompt_view
from quaff_core.data.jsonl import Example
from quaff_core.errors import NothingToTrainError, UnsupportedExamplesError
from quaff_core.lm.tokenization import PadCollator, TokenizedDataset, tokenize_examples
from quaff_core.options.base_models import find_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import convert_to_quaff, quaff_layers
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import TrainCallbacks
from quaff_core.training.runtime import Runtime

logger = logging.getLogger(__name__)


def describe_base(source: str | os.PathLike[str]) -> str:
    """The id recorded for a base model source: the catalog id, else the path or hub id."""
    info = find_base_model(os.fspath(source))
    if info is not None:
        return info.id
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else os.fspath(source)


def tokenize_dataset(
    examples: Sequence[Example],
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    *,
    name: str,
    callbacks: TrainCallbacks,
) -> TokenizedDataset:
    """Tokenise as training does; report truncated and dropped examples; refuse an empty set.

    A DPO dataset is tokenised as its preferred answers, a reinforcement one as its prompts
    (calibration, step counts).
    """
    if config.method == "dpo":
        other = [e.line for e in examples if e.format != "preference"]
        if other:
            raise UnsupportedExamplesError(
                other, "is not a preference pair, which method 'dpo' trains on", dataset=name
            )
        examples = [chosen_view(e) for e in examples]
    elif config.method == "reinforcement":
        other = [e.line for e in examples if e.format != "reinforcement"]
        if other:
            raise UnsupportedExamplesError(
                other, "is not a prompt, which method 'reinforcement' trains on", dataset=name
            )
        examples = [prompt_view(e) for e in examples]
    elif any(e.format == "reinforcement" for e in examples):
        lines = [e.line for e in examples if e.format == "reinforcement"]
        raise UnsupportedExamplesError(
            lines,
            "is a prompt without an answer: train prompts with method 'reinforcement'",
            dataset=name,
        )
    try:
        dataset = tokenize_examples(
            examples,
            tokenizer,
            max_seq_length=config.max_seq_length,
            train_on_inputs=config.train_on_inputs,
        )
    except UnsupportedExamplesError as exc:
        raise UnsupportedExamplesError(exc.lines, exc.reason, dataset=name) from None
    limit = config.max_seq_length
    if dataset.n_truncated:
        callbacks.on_event(
            TrainEvent(
                EventKind.EXAMPLES_TRUNCATED,
                f"{dataset.n_truncated} of {len(examples)} {name} examples truncated to "
                f"{limit} tokens",
                {
                    "dataset": name,
                    "count": dataset.n_truncated,
                    "reason": "longer_than_max_seq_length",
                    "max_seq_length": limit,
                },
            )
        )
    if dataset.n_dropped:
        callbacks.on_event(
            TrainEvent(
                EventKind.EXAMPLES_DROPPED,
                f"{dataset.n_dropped} of {len(examples)} {name} examples dropped: no trainable "
                f"token within max_seq_length={limit}",
                {
                    "dataset": name,
                    "count": dataset.n_dropped,
                    "reason": "no_trainable_token",
                    "max_seq_length": limit,
                },
                level="warn",
            )
        )
    if not len(dataset):
        raise NothingToTrainError(name, limit)
    return dataset


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


def _given_map(
    outlier_map: OutlierMap | str | os.PathLike[str], callbacks: TrainCallbacks
) -> OutlierMap:
    """A map passed in by the caller (object or JSON path), reported as reused."""
    used = outlier_map if isinstance(outlier_map, OutlierMap) else OutlierMap.load(outlier_map)
    where = "" if isinstance(outlier_map, OutlierMap) else f" {os.fspath(outlier_map)}"
    callbacks.on_event(
        TrainEvent(
            EventKind.OUTLIER_MAP_REUSED,
            f"Reusing outlier map{where} ({used.num_channels} channels)",
            {"channels": used.num_channels, "layers": len(used.layers)},
        )
    )
    return used


def prepare_model(
    model: nn.Module,
    config: TrainConfig,
    dataset: TokenizedDataset,
    *,
    pad_token_id: int,
    outlier_map: OutlierMap | str | os.PathLike[str] | None,
    callbacks: TrainCallbacks,
    model_id: str | None,
    runtime: Runtime,
) -> tuple[Any, OutlierMap | None]:
    """Quaff-convert `model` (calibrating unless a map is given) and wrap it with its adapter
    (`config.peft_method`).

    With a bfloat16 runtime the model is cast to bf16 (attention, norms, head) before calibration,
    whose forward then runs in bf16 as training's does; adapters stay fp32.
    """

    used: OutlierMap | None = None
    if config.quantization == "quaff":
        if runtime.dtype == torch.bfloat16:
            model.to(torch.bfloat16)  # before calibration: its forward then runs in bf16 too
        if outlier_map is not None:
            used = _given_map(outlier_map, callbacks)
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
    elif outlier_map is not None:
        raise ValueError("an outlier map was given but quantization is 'none'; drop one of them")
    # adapter initialisation draws from the global RNG: `train` seeds it first

    set_seed(config.seed)
    return add_adapter(model, config), used
