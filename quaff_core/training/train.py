"""`train`: PEFT fine-tuning of a Quaff-converted (or unquantized) model with HF `Trainer`
(supervised), TRL's `DPOTrainer` (method 'dpo') or `GRPOTrainer` (method 'reinforcement'), as
named steps:
load → tokenise → resolve the runtime → prepare (calibrate, convert, adapter) → run → save."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainingArguments, set_seed

from quaff_core.adapters.peft_layers import add_adapter
from quaff_core.file_names import CHECKPOINTS_DIR, MOMENTUM_FILE, OUTLIER_MAP_FILE
from quaff_core.lm.tokenization import PadCollator
from quaff_core.models.loading import load_base_model
from quaff_core.models.provenance import weights_facts
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import load_quaff_state_dict
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.base import TrainingBase, prepare_base
from quaff_core.training.callbacks import NullCallbacks, TrainCallbacks
from quaff_core.training.checkpoints import adapter_facts, check_resume
from quaff_core.training.datasets import DataSource, TrainingData, report_data, tokenize_data
from quaff_core.training.hf_setup import training_args
from quaff_core.training.prepare import describe_base
from quaff_core.training.rft import GraderReward
from quaff_core.training.run import (
    RunInputs,
    TrainResult,
    check_world,
    load_start,
    run_training,
)
from quaff_core.training.runtime import Runtime, report_runtime, resolve_runtime, warm_up

__all__ = ["TrainResult", "TrainingBase", "train"]
ModelSource = str | os.PathLike[str] | tuple[PreTrainedModel, PreTrainedTokenizerBase]
MapSource = OutlierMap | str | os.PathLike[str]


def _load(
    model: ModelSource,
    base_model_id: str | None,
    cache_dir: str | os.PathLike[str] | None,
    callbacks: TrainCallbacks,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, str]:
    """The base model, its tokenizer and the id recorded for it."""
    if isinstance(model, tuple):
        base, tokenizer = model
        return (
            base,
            tokenizer,
            base_model_id or str(getattr(base.config, "_name_or_path", "") or "unknown"),
        )
    callbacks.on_event(
        TrainEvent(
            EventKind.MODEL_LOADING,
            f"Loading base model {os.fspath(model)}",
            {"model": os.fspath(model)},
        )
    )
    base, tokenizer = load_base_model(model, cache_dir=cache_dir)
    return base, tokenizer, base_model_id or describe_base(model)


def _source(
    model: ModelSource | TrainingBase,
    base_model_id: str | None,
    cache_dir: str | os.PathLike[str] | None,
    callbacks: TrainCallbacks,
) -> tuple[TrainingBase | PreTrainedModel, PreTrainedTokenizerBase, str, int]:
    """The prepared base as given, or the loaded model; its tokenizer, id and parameter count."""
    if isinstance(model, TrainingBase):
        return model, model.tokenizer, model.base_id, model.n_params
    raw, tokenizer, base_id = _load(model, base_model_id, cache_dir, callbacks)
    return raw, tokenizer, base_id, sum(p.numel() for p in raw.parameters())


def _run_map(given: MapSource | None, start: Path | None, resume: Path | None) -> MapSource | None:
    """The outlier map a run uses: a resumed run's own (it is the same run: not a reuse), else a
    continued run's (reported as reused), else `given`."""
    if resume is not None and (resume / OUTLIER_MAP_FILE).is_file():
        return OutlierMap.load(resume / OUTLIER_MAP_FILE)
    if start is not None and given is None and (start / OUTLIER_MAP_FILE).is_file():
        return start / OUTLIER_MAP_FILE
    return given


def _runtime(
    config: TrainConfig, n_params: int, data: TrainingData, callbacks: TrainCallbacks
) -> Runtime:
    """The run's resolved settings, reported."""
    runtime = resolve_runtime(
        config, n_params=n_params, total_steps=config.total_steps(len(data.train_set))
    )
    report_runtime(runtime, callbacks)
    return runtime


def _adapted(
    base: TrainingBase,
    config: TrainConfig,
    runtime: Runtime,
    start: Path | None,
    resume: Path | None,
) -> Any:
    """The run's own copy of the base with its adapter (seeded; a start's or resume's state)."""
    model = base.job_copy(config, runtime)
    set_seed(config.seed)  # adapter initialisation draws from the global RNG
    peft_model = add_adapter(model, config)
    if start is not None:
        load_start(peft_model, start)
    if resume is not None and (resume / MOMENTUM_FILE).is_file():
        load_quaff_state_dict(peft_model, load_file(str(resume / MOMENTUM_FILE)))
    return peft_model


def _warm(run: RunInputs, base: TrainingBase, callbacks: TrainCallbacks) -> Runtime:
    """Build the compiled passes before the timed steps (once per base); compile off if that
    fails."""
    if not run.runtime.compile or base.warmed:
        return run.runtime
    collator = PadCollator(pad_token_id=int(run.tokenizer.pad_token_id))
    train_set = run.data.train_set
    first = collator([train_set[i] for i in range(min(run.config.batch_size, len(train_set)))])
    if warm_up(run.peft_model, first, callbacks):
        base.warmed = True
        return run.runtime
    return replace(run.runtime, compile=False)


def _check(
    config: TrainConfig,
    source: TrainingBase | PreTrainedModel,
    outlier_map: MapSource | None,
    reward: GraderReward | None,
) -> None:
    """ValueError for arguments that do not go together."""
    if isinstance(source, TrainingBase) and outlier_map is not None:
        raise ValueError("a prepared TrainingBase carries its outlier map: pass none")
    if config.method == "reinforcement" and reward is None:
        raise ValueError("method 'reinforcement' needs reward=GraderReward(grader, context)")


def _facts(base: TrainingBase, config: TrainConfig, data: TrainingData) -> dict[str, Any]:
    """What the adapter records of its run: base, options, map, weights and data sizes."""
    facts = {
        **adapter_facts(base.base_id, config, base.outlier_map),
        "weights": weights_facts(base.base_id),
    }
    n_valid = len(data.valid_set) if data.valid_set is not None else 0
    facts["data"] = {"train_examples": len(data.train_set), "validation_examples": n_valid}
    return facts


def _data(
    train_data: DataSource | TrainingData,
    validation_data: DataSource | None,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
) -> TrainingData:
    """The run's tokenised data: as given, or read and tokenised here."""
    if not isinstance(train_data, TrainingData):
        return tokenize_data(train_data, validation_data, tokenizer, config)
    if validation_data is not None:
        raise ValueError("validation_data must be None when train_data is TrainingData")
    return train_data


def train(
    model: ModelSource | TrainingBase,
    train_data: DataSource | TrainingData,
    output_dir: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    validation_data: DataSource | None = None,
    outlier_map: MapSource | None = None,
    callbacks: TrainCallbacks | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    base_model_id: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    start_from: str | os.PathLike[str] | None = None,
    reward: GraderReward | None = None,
) -> TrainResult:
    """Fine-tune a PEFT adapter: checkpoints in `output_dir/checkpoints`, adapter in `/adapter`.

    `model` is a path, catalog or hub id, a (model, tokenizer) pair, or a `TrainingBase` already
    prepared (converted with its map: `outlier_map` must then be None). `train_data` is a JSONL
    path, a list of examples, or `TrainingData` already tokenised (with its validation set).
    `start_from` (an adapter or checkpoint directory of an earlier run on the same base) starts
    from its weights, outlier map and scale state instead of a fresh adapter. Method
    'reinforcement' needs `reward` (the job's grader).
    """
    config = config or TrainConfig()
    callbacks = callbacks or NullCallbacks()
    out = Path(output_dir)
    resume = check_resume(resume_from)
    start = Path(start_from) if start_from is not None else None
    source, tokenizer, base_id, n_params = _source(model, base_model_id, cache_dir, callbacks)
    _check(config, source, outlier_map, reward)
    data = _data(train_data, validation_data, tokenizer, config)
    report_data(data, config, callbacks)
    runtime = _runtime(config, n_params, data, callbacks)
    args = training_args(config, runtime, out / CHECKPOINTS_DIR)
    if config.devices > 1:
        TrainingArguments(**args)  # building HF's arguments joins the torchrun process group
    rank = check_world(config)
    base = (
        source
        if isinstance(source, TrainingBase)
        else prepare_base(
            source,
            tokenizer,
            base_id=base_id,
            config=config,
            runtime=runtime,
            outlier_map=_run_map(outlier_map, start, resume),
            data=data,
            callbacks=callbacks,
        )
    )
    peft_model = _adapted(base, config, runtime, start, resume)
    facts = _facts(base, config, data)
    run = RunInputs(
        peft_model, tokenizer, data, config, runtime, args, base.outlier_map, facts, rank, reward
    )
    run.runtime = _warm(run, base, callbacks)
    return run_training(run, out, resume=resume, callbacks=callbacks)
