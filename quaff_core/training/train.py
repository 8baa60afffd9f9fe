"""`train`: PEFT fine-tuning of a Quaff-converted (or unquantized) model with HF `Trainer`
(supervised), TRL's `DPOTrainer` (method 'dpo') or `GRPOTrainer` (method 'reinforcement')."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PrinterCallback,
    TrainerState,
    TrainingArguments,
)

from quaff_core.data.jsonl import Example, read_examples
from quaff_core.errors import StartAdapterError
from quaff_core.file_names import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    CHECKPOINTS_DIR,
    METRICS_FILE,
    MOMENTUM_FILE,
    OUTLIER_MAP_FILE,
    TRAINER_STATE,
)
from quaff_core.lm.tokenization import PadCollator, TokenizedDataset
from quaff_core.models.loading import load_base_model
from quaff_core.models.provenance import name_base, weights_facts, write_modelfile
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import load_quaff_state_dict, quaff_layers
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.scale_state import track_token_mask
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import HFBridge, NullCallbacks, TrainCallbacks
from quaff_core.training.checkpoints import (
    adapter_facts,
    check_resume,
    checkpoint_step,
    metrics_history,
    write_quaff_files,
)
from quaff_core.training.ddp import ScaleSync, ignore_frozen, on_rank0, world
from quaff_core.training.dpo import dpo_trainer, drop_reference
from quaff_core.training.prepare import describe_base, prepare_model, tokenize_dataset
from quaff_core.training.rft import GraderReward, rft_trainer
from quaff_core.training.runtime import Runtime, report_runtime, resolve_runtime, warm_up
from quaff_core.training.stability import StabilityProbe, report_skipped_updates, report_stability
from quaff_core.training.trainer import CausalLMTrainer

logger = logging.getLogger(__name__)

Stopped = Literal["completed", "cancelled", "paused"]
ModelSource = str | os.PathLike[str] | tuple[PreTrainedModel, PreTrainedTokenizerBase]
DataSource = str | os.PathLike[str] | Sequence[Example]


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


def _examples(data: DataSource, name: str) -> list[Example]:
    """Examples from a JSONL path or an in-memory list."""
    if isinstance(data, str | os.PathLike):
        return read_examples(data, name=f"{name} file {os.fspath(data)!r}")
    if not all(isinstance(e, Example) for e in data):
        raise TypeError(
            f"{name} data must be a JSONL path or a list of quaff_core.data.examples.Example"
        )
    return list(data)


def _tokenized(
    examples: Sequence[Example],
    name: str,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    callbacks: TrainCallbacks,
) -> TokenizedDataset:
    """Tokenise a dataset (NothingToTrainError if no example has a trainable token)."""
    return tokenize_dataset(examples, tokenizer, config, name=name, callbacks=callbacks)


def _training_args(config: TrainConfig, runtime: Runtime, checkpoints: Path) -> dict[str, Any]:
    """HF arguments: saving and evaluation are scheduled by HFBridge, not by strategies. With
    several devices (torchrun ranks) DDP syncs LoRA gradients only: no buffer broadcasts, no
    unused-parameter search (every LoRA parameter takes part in every forward)."""
    parallel = config.devices > 1
    return dict(
        output_dir=str(checkpoints),
        num_train_epochs=config.n_epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=float(config.warmup_ratio) if config.warmup_ratio else 0,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=runtime.compute_dtype == "bfloat16",
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0,
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        ddp_backend=("nccl" if torch.cuda.is_available() else "gloo") if parallel else None,
        ddp_find_unused_parameters=False if parallel else None,
        ddp_broadcast_buffers=False if parallel else None,
    )


def _trainer(
    peft_model: Any,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    *,
    args: dict[str, Any],
    sets: tuple[TokenizedDataset, TokenizedDataset | None],
    examples: tuple[list[Example], list[Example] | None],
    collator: PadCollator,
    bridge: HFBridge,
    on_train_batch: Callable[[Mapping[str, Any]], None] | None = None,
    extra_callbacks: Sequence[Any] = (),
    reward: GraderReward | None = None,
) -> Any:
    """The supervised trainer (`on_train_batch` sees each training batch), TRL's DPO trainer
    for method 'dpo', or TRL's GRPO trainer scored by `reward` for method 'reinforcement'."""
    if config.method == "reinforcement" and reward is not None:
        return rft_trainer(
            peft_model,
            tokenizer,
            config,
            args=args,
            train_examples=examples[0],
            valid_examples=examples[1],
            callbacks=[bridge],
            reward=reward,
        )
    if config.method == "dpo":
        return dpo_trainer(
            peft_model,
            tokenizer,
            config,
            args=args,
            train_examples=examples[0],
            valid_examples=examples[1],
            callbacks=[bridge],
        )
    return CausalLMTrainer(
        model=peft_model,
        args=TrainingArguments(**args),
        train_dataset=sets[0],
        eval_dataset=sets[1],
        data_collator=collator,
        callbacks=[bridge, *extra_callbacks],
        chunked_loss=config.chunked_loss,
        on_train_batch=on_train_batch,
    )


def _check_world(config: TrainConfig) -> int:
    """This process's rank; ValueError unless the process group has `config.devices` ranks."""
    rank, size = world()
    if size != config.devices:
        raise ValueError(
            f"devices={config.devices} but this process group has {size} process(es); launch "
            f"{config.devices} ranks with torchrun (--nproc-per-node {config.devices}) or set "
            "devices to the group's size"
        )
    return rank


def _save_adapter(
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


_ADAPTER_KEYS = ("lora_", "ia3_l", "prompt_encoder")


def train(
    model: ModelSource,
    train_data: DataSource,
    output_dir: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    validation_data: DataSource | None = None,
    outlier_map: OutlierMap | str | os.PathLike[str] | None = None,
    callbacks: TrainCallbacks | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    base_model_id: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    start_from: str | os.PathLike[str] | None = None,
    reward: GraderReward | None = None,
) -> TrainResult:
    """Fine-tune a PEFT adapter: checkpoints in `output_dir/checkpoints`, adapter in `/adapter`.

    `start_from` (an adapter or checkpoint directory of an earlier run on the same base) starts
    from its weights, outlier map and scale state instead of a fresh adapter. Method
    'reinforcement' needs `reward` (the job's grader).
    """
    config = config or TrainConfig()
    if config.method == "reinforcement" and reward is None:
        raise ValueError("method 'reinforcement' needs reward=GraderReward(grader, context)")
    callbacks = callbacks or NullCallbacks()
    out = Path(output_dir)
    resume = check_resume(resume_from)
    if isinstance(model, tuple):
        base, tokenizer = model
        base_id = base_model_id or str(getattr(base.config, "_name_or_path", "") or "unknown")
    else:
        callbacks.on_event(
            TrainEvent(
                EventKind.MODEL_LOADING,
                f"Loading base model {os.fspath(model)}",
                {"model": os.fspath(model)},
            )
        )
        base, tokenizer = load_base_model(model, cache_dir=cache_dir)
        base_id = base_model_id or describe_base(model)
    train_examples = _examples(train_data, "training")
    valid_examples = (
        _examples(validation_data, "validation") if validation_data is not None else None
    )
    train_set = _tokenized(train_examples, "training", tokenizer, config, callbacks)
    valid_set = (
        _tokenized(valid_examples, "validation", tokenizer, config, callbacks)
        if valid_examples is not None
        else None
    )
    # a resumed continued run loads its start too: DPO's reference copies the starting adapter
    start = Path(start_from) if start_from is not None else None
    if start is not None and outlier_map is None and (start / OUTLIER_MAP_FILE).is_file():
        outlier_map = OutlierMap.load(start / OUTLIER_MAP_FILE)
    if resume is not None and (resume / OUTLIER_MAP_FILE).is_file():
        outlier_map = OutlierMap.load(resume / OUTLIER_MAP_FILE)
    pad_id = int(tokenizer.pad_token_id)
    collator = PadCollator(pad_token_id=pad_id)
    runtime = resolve_runtime(
        config,
        n_params=sum(p.numel() for p in base.parameters()),
        total_steps=config.total_steps(len(train_set)),
    )
    report_runtime(runtime, callbacks)
    args = _training_args(config, runtime, out / CHECKPOINTS_DIR)
    if config.devices > 1:
        TrainingArguments(**args)  # building HF's arguments joins the torchrun process group
    rank = _check_world(config)
    peft_model, used_map = prepare_model(
        base,
        config,
        train_set,
        pad_token_id=pad_id,
        outlier_map=outlier_map,
        callbacks=callbacks,
        model_id=base_id,
        runtime=runtime,
    )
    if start is not None:
        load_start(peft_model, start)
    if resume is not None and (resume / MOMENTUM_FILE).is_file():
        load_quaff_state_dict(peft_model, load_file(str(resume / MOMENTUM_FILE)))
    if runtime.compile:
        first = collator([train_set[i] for i in range(min(config.batch_size, len(train_set)))])
        if not warm_up(peft_model, first, callbacks):
            runtime = replace(runtime, compile=False)
    facts = {**adapter_facts(base_id, config, used_map), "weights": weights_facts(base_id)}
    total = config.total_steps(len(train_set))
    probe = (
        StabilityProbe(peft_model, used_map)
        if used_map is not None and config.quantization == "quaff"
        else None
    )

    def on_save(path: Path) -> None:
        write_quaff_files(path, peft_model, facts, used_map)
        if probe is not None:
            report_stability(probe, checkpoint_step(path), callbacks)

    bridge = HFBridge(
        callbacks,
        save_steps=config.save_every(total),
        eval_steps=config.eval_every(total),
        has_eval=valid_set is not None,
        on_save=on_rank0(on_save),
        eval_batches=math.ceil(len(valid_set) / config.batch_size) if valid_set is not None else 0,
    )
    if config.devices > 1:
        ignore_frozen(peft_model)
    trainer = _trainer(
        peft_model,
        tokenizer,
        config,
        args=args,
        sets=(train_set, valid_set),
        examples=(train_examples, valid_examples),
        collator=collator,
        bridge=bridge,
        on_train_batch=probe.remember if probe is not None else None,
        extra_callbacks=[ScaleSync(peft_model)] if config.devices > 1 else [],
        reward=reward,
    )
    trainer.remove_callback(PrinterCallback)  # progress goes to `callbacks`, not stdout
    if resume is not None and checkpoint_step(resume) >= total:
        # the run ended at this checkpoint (e.g. a crash before the adapter was written)
        set_peft_model_state_dict(peft_model, load_file(str(resume / ADAPTER_WEIGHTS)))
        state = TrainerState.load_from_json(str(resume / TRAINER_STATE))
    else:
        hooks = track_token_mask(peft_model)  # pad tokens stay out of the outlier statistic
        try:
            trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        finally:
            for hook in hooks:
                hook.remove()
        state = trainer.state
    report_skipped_updates(peft_model, callbacks)
    stopped: Stopped = "completed"
    if bridge.stopped == "cancel":
        stopped = "cancelled"
    elif bridge.stopped == "pause":
        stopped = "paused"
    history = metrics_history(state.log_history)
    adapter_dir = None
    if stopped == "completed" and rank == 0:
        if config.method == "dpo":
            drop_reference(peft_model)
        facts = {**facts, "steps": state.global_step, "trained_tokens": state.num_input_tokens_seen}
        adapter_dir = _save_adapter(out, peft_model, tokenizer, facts, used_map)
        callbacks.on_event(
            TrainEvent(
                EventKind.MODEL_SAVED,
                "New fine-tuned model created",
                {"path": str(adapter_dir), "steps": state.global_step},
            )
        )
    if rank == 0:
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
        outlier_map=used_map,
        n_truncated=train_set.n_truncated,
        n_dropped=train_set.n_dropped,
        runtime=runtime,
    )
