"""A job's stored options turned into a `TrainConfig`, with checkpoint and evaluation schedules."""

from __future__ import annotations

import math
from typing import Any

from quaff_core.config import TrainConfig
from store.models import Job


class JobFailure(Exception):
    """A failure the user can act on: stored as the job's `error {code, message, param}`."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def total_steps(n_examples: int, hyper: dict[str, Any], training: dict[str, Any]) -> int:
    """Optimizer steps HF Trainer will run: ceil(ceil(n / batch) / accumulation) per epoch."""
    batches = math.ceil(n_examples / int(hyper["batch_size"]))
    per_epoch = max(1, math.ceil(batches / int(training["gradient_accumulation_steps"])))
    return per_epoch * int(hyper["n_epochs"])


def every(total: int, count: int) -> int:
    """Steps between `count` evenly spread events over `total` steps (0 = only at the end)."""
    if count <= 1:
        return 0
    return max(1, math.ceil(total / count))


def lora_alpha(value: Any) -> int:
    """The trainer takes a whole-number LoRA alpha."""
    number = float(value)
    if not number.is_integer():
        raise JobFailure(
            "invalid_hyperparameters",
            f"lora.alpha must be a whole number for this trainer, got {value}; use e.g. "
            f"{max(1, round(number))}",
            "lora.alpha",
        )
    return int(number)


def calibration_options(job: Job, config: TrainConfig) -> dict[str, Any]:
    """What makes two calibrations interchangeable (the map reuse key, with model and data)."""
    return {
        "outlier_strategy": config.outlier_strategy,
        "outlier_threshold": config.outlier_threshold,
        "outlier_max_ratio": config.outlier_max_ratio,
        "calibration_examples": config.calibration_examples,
        "max_seq_length": config.max_seq_length,
        "train_on_inputs": config.train_on_inputs,
    }


def train_config(job: Job, n_examples: int, *, has_validation: bool) -> TrainConfig:
    """The TrainConfig of a job; an option the trainer refuses becomes a JobFailure."""
    hyper, lora, quant, training = job.hyperparameters, job.lora, job.quantization, job.training
    steps = total_steps(n_examples, hyper, training)
    targets = lora["target_modules"]
    try:
        return TrainConfig(
            n_epochs=int(hyper["n_epochs"]),
            batch_size=int(hyper["batch_size"]),
            learning_rate=float(training["learning_rate"]),
            lr_scheduler=training["lr_scheduler"],
            warmup_ratio=float(training["warmup_ratio"]),
            max_seq_length=int(training["max_seq_length"]),
            gradient_accumulation_steps=int(training["gradient_accumulation_steps"]),
            weight_decay=float(training["weight_decay"]),
            max_grad_norm=float(training["max_grad_norm"]),
            train_on_inputs=training["train_on_inputs"],
            seed=int(job.seed),
            lora_r=int(lora["r"]),
            lora_alpha=lora_alpha(lora["alpha"]),
            lora_dropout=float(lora["dropout"]),
            lora_target_modules=targets if isinstance(targets, str) else tuple(targets),
            quantization=quant["method"],
            outlier_strategy=quant["outlier_strategy"],
            outlier_threshold=float(quant["outlier_threshold"]),
            outlier_max_ratio=float(quant["outlier_max_ratio"]),
            momentum=float(quant["momentum"]),
            compute_dtype=quant.get("compute_dtype", "float32"),
            compile=bool(quant.get("compile", False)),
            save_steps=every(steps, int(training["n_checkpoints"])),
            eval_steps=every(steps, int(training["n_evals"])) if has_validation else 0,
        )
    except (TypeError, ValueError) as exc:
        raise JobFailure("invalid_hyperparameters", f"Invalid training option: {exc}") from exc
