"""Run a prepared model through its trainer: checkpoints, stop requests, the saved adapter."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from peft import set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerBase, PrinterCallback, TrainerState

from quaff_core.errors import StartAdapterError
from quaff_core.file_names import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    METRICS_FILE,
    MOMENTUM_FILE,
    TRAINER_STATE,
)
from quaff_core.lm.tokenization import PadCollator
from quaff_core.models.provenance import name_base, write_model_card, write_modelfile
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import load_quaff_state_dict, quaff_layers
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.scale_state import track_token_mask
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import HFBridge, TrainCallbacks
from quaff_core.training.checkpoints import checkpoint_step, metrics_history, write_quaff_files
from quaff_core.training.datasets import TrainingData
from quaff_core.training.ddp import ScaleSync, ignore_frozen, on_rank0, world
from quaff_core.training.dpo import drop_reference
from quaff_core.training.hf_setup import build_trainer
from quaff_core.training.rft import GraderReward
from quaff_core.training.runtime import Runtime
from quaff_core.training.stability import StabilityProbe, report_skipped_updates, report_stability

Stopped = Literal["completed", "cancelled", "paused"]
_ADAPTER_KEYS = ("lora_", "ia3_l", "prompt_encoder")


@dataclass
class TrainResult:
    """What a run produced: adapter (None unless completed), metrics, tokens, stop reason."""

    output_dir: Path
    adapter_dir: Path | None
    checkpoint_dir: Path | None
    stopped: Stopped
    final_step: int
    total_steps: int
    trained_tokens: int
    metrics: list[dict[str, Any]] = field(default_factory=list)
    outlier_map: OutlierMap | None = None
    n_truncated: int = 0
    n_dropped: int = 0
    runtime: Runtime | None = None


@dataclass
class RunInputs:
    """A prepared run: the PEFT model, its data, settings, map and the adapter's facts."""

    peft_model: Any
    tokenizer: PreTrainedTokenizerBase
    data: TrainingData
    config: TrainConfig
    runtime: Runtime
    args: dict[str, Any]
    outlier_map: OutlierMap | None
    facts: dict[str, Any]
    rank: int = 0
    reward: GraderReward | None = None


def check_world(config: TrainConfig) -> int:
    """This process's rank; ValueError unless the process group has `config.devices` ranks."""
    rank, size = world()
    if size != config.devices:
        raise ValueError(
            f"devices={config.devices} but this process group has {size} process(es); launch "
            f"{config.devices} ranks with torchrun (--nproc-per-node {config.devices}) or set "
            "devices to the group's size"
        )
    return rank


def save_adapter(
    out: Path,
    peft_model: Any,
    tokenizer: PreTrainedTokenizerBase,
    facts: dict[str, Any],
    outlier_map: OutlierMap | None,
) -> Path:
    """Write the adapter to a staging directory, then move it to `out/adapter` in one rename."""
    target, staging = out / ADAPTER_DIR, out / f".{ADAPTER_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    peft_model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    name_base(staging, facts["base_model"])
    write_model_card(staging, facts["base_model"], facts)
    write_modelfile(staging, facts["base_model"], tokenizer)
    write_quaff_files(staging, peft_model, facts, outlier_map)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


def load_start(peft_model: Any, start: Path) -> None:
    """Load an earlier run's adapter weights (and outlier scale state) into `peft_model`;
    StartAdapterError when its adapter has another shape (method, rank, targets)."""
    if not (start / ADAPTER_WEIGHTS).is_file():
        raise StartAdapterError(f"start_from {os.fspath(start)!r} holds no {ADAPTER_WEIGHTS}")
    try:
        result = set_peft_model_state_dict(peft_model, load_file(str(start / ADAPTER_WEIGHTS)))
    except RuntimeError as exc:
        raise StartAdapterError(
            f"the adapter in {os.fspath(start)!r} has another shape: {exc}"
        ) from exc
    missing = [k for k in getattr(result, "missing_keys", ()) if any(t in k for t in _ADAPTER_KEYS)]
    if missing:
        raise StartAdapterError(
            f"the adapter in {os.fspath(start)!r} lacks {len(missing)} weights of this adapter "
            f"(e.g. {missing[0]}): train the continued job with the same peft options"
        )
    if (start / MOMENTUM_FILE).is_file() and quaff_layers(peft_model):
        load_quaff_state_dict(peft_model, load_file(str(start / MOMENTUM_FILE)))


def _probe(run: RunInputs) -> StabilityProbe | None:
    """The outlier-stability probe of a Quaff run (None without an outlier map)."""
    if run.outlier_map is None or run.config.quantization != "quaff":
        return None
    return StabilityProbe(run.peft_model, run.outlier_map)


def _bridge(run: RunInputs, probe: StabilityProbe | None, callbacks: TrainCallbacks) -> HFBridge:
    """The callback that schedules saves and evaluations and reports to `callbacks`."""
    config, valid = run.config, run.data.valid_set
    total = config.total_steps(len(run.data.train_set))

    def on_save(path: Path) -> None:
        write_quaff_files(path, run.peft_model, run.facts, run.outlier_map)
        if probe is not None:
            report_stability(probe, checkpoint_step(path), callbacks)

    return HFBridge(
        callbacks,
        save_steps=config.save_every(total),
        eval_steps=config.eval_every(total),
        has_eval=valid is not None,
        on_save=on_rank0(on_save),
        eval_batches=math.ceil(len(valid) / config.batch_size) if valid is not None else 0,
    )


def _fit(run: RunInputs, trainer: Any, resume: Path | None) -> TrainerState:
    """Train (or resume) to the end or to a stop request; the trainer's final state."""
    total = run.config.total_steps(len(run.data.train_set))
    if resume is not None and checkpoint_step(resume) >= total:
        # the run ended at this checkpoint (e.g. a crash before the adapter was written)
        set_peft_model_state_dict(run.peft_model, load_file(str(resume / ADAPTER_WEIGHTS)))
        return TrainerState.load_from_json(str(resume / TRAINER_STATE))
    hooks = track_token_mask(run.peft_model)  # pad tokens stay out of the outlier statistic
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    finally:
        for hook in hooks:
            hook.remove()
    state: TrainerState = trainer.state
    return state


def _stopped(bridge: HFBridge) -> Stopped:
    """Why training ended: a cancel, a pause, or the last step."""
    if bridge.stopped == "cancel":
        return "cancelled"
    if bridge.stopped == "pause":
        return "paused"
    return "completed"


def _save(run: RunInputs, out: Path, state: TrainerState, callbacks: TrainCallbacks) -> Path:
    """Save the completed run's adapter and report it."""
    if run.config.method == "dpo":
        drop_reference(run.peft_model)
    facts = {**run.facts, "steps": state.global_step, "trained_tokens": state.num_input_tokens_seen}
    adapter_dir = save_adapter(out, run.peft_model, run.tokenizer, facts, run.outlier_map)
    callbacks.on_event(
        TrainEvent(
            EventKind.MODEL_SAVED,
            "New fine-tuned model created",
            {"path": str(adapter_dir), "steps": state.global_step},
        )
    )
    return adapter_dir


def run_training(
    run: RunInputs, out: Path, *, resume: Path | None, callbacks: TrainCallbacks
) -> TrainResult:
    """Train a prepared model; save its adapter when it completes (rank 0)."""
    probe = _probe(run)
    bridge = _bridge(run, probe, callbacks)
    if run.config.devices > 1:
        ignore_frozen(run.peft_model)
    trainer = build_trainer(
        run.peft_model,
        run.tokenizer,
        run.config,
        args=run.args,
        data=run.data,
        collator=PadCollator(pad_token_id=int(run.tokenizer.pad_token_id)),
        bridge=bridge,
        on_train_batch=probe.remember if probe is not None else None,
        extra_callbacks=[ScaleSync(run.peft_model)] if run.config.devices > 1 else [],
        reward=run.reward,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to `callbacks`, not stdout
    state = _fit(run, trainer, resume)
    report_skipped_updates(run.peft_model, callbacks)
    stopped = _stopped(bridge)
    history = metrics_history(state.log_history)
    adapter_dir = None
    if stopped == "completed" and run.rank == 0:
        adapter_dir = _save(run, out, state, callbacks)
    if run.rank == 0:
        with (out / METRICS_FILE).open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in history)
    return TrainResult(
        output_dir=out,
        adapter_dir=adapter_dir,
        checkpoint_dir=bridge.last_checkpoint or resume,
        stopped=stopped,
        final_step=state.global_step,
        total_steps=state.max_steps,
        trained_tokens=int(state.num_input_tokens_seen),
        metrics=history,
        outlier_map=run.outlier_map,
        n_truncated=run.data.train_set.n_truncated,
        n_dropped=run.data.train_set.n_dropped,
        runtime=run.runtime,
    )
