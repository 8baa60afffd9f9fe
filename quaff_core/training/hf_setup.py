"""The Hugging Face side of a run: TrainingArguments and the trainer (HF's, or TRL's DPO or
GRPO)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase, TrainingArguments

from quaff_core.lm.tokenization import PadCollator
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.callbacks import HFBridge
from quaff_core.training.datasets import TrainingData
from quaff_core.training.dpo import dpo_trainer
from quaff_core.training.rft import GraderReward, rft_trainer
from quaff_core.training.runtime import Runtime
from quaff_core.training.trainer import CausalLMTrainer


def training_args(config: TrainConfig, runtime: Runtime, checkpoints: Path) -> dict[str, Any]:
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


def build_trainer(
    peft_model: Any,
    tokenizer: PreTrainedTokenizerBase,
    config: TrainConfig,
    *,
    args: dict[str, Any],
    data: TrainingData,
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
            train_examples=data.train_examples,
            valid_examples=data.valid_examples,
            callbacks=[bridge],
            reward=reward,
        )
    if config.method == "dpo":
        return dpo_trainer(
            peft_model,
            tokenizer,
            config,
            args=args,
            train_examples=data.train_examples,
            valid_examples=data.valid_examples,
            callbacks=[bridge],
        )
    return CausalLMTrainer(
        model=peft_model,
        args=TrainingArguments(**args),
        train_dataset=data.train_set,
        eval_dataset=data.valid_set,
        data_collator=collator,
        callbacks=[bridge, *extra_callbacks],
        chunked_loss=config.chunked_loss,
        on_train_batch=on_train_batch,
        group_by_length=config.group_by_length,
    )
