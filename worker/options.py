"""A job's stored options as the trainer's `TrainConfig`, and the user-facing failure type."""

from __future__ import annotations

from typing import Any

from quaff_core.options.spec import OptionError
from quaff_core.options.train_config import TrainConfig
from store.job_options import stored_config
from store.models import Job


class JobFailure(Exception):
    """A failure the user can act on: stored as the job's `error {code, message, param}`."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def train_config(job: Job) -> TrainConfig:
    """The job's config, as `create_job` checked it (an old row the spec now refuses fails)."""
    groups = {
        "hyperparameters": job.hyperparameters,
        "lora": job.lora,
        "peft": job.peft or {},
        "quantization": job.quantization,
        "training": job.training,
    }
    try:
        return stored_config(groups, int(job.seed), job.method or "supervised")
    except OptionError as exc:
        raise JobFailure(
            "invalid_hyperparameters",
            f"Invalid training option {exc.option.api or exc.option.name}: {exc.reason}",
            exc.option.api,
        ) from exc


def calibration_options(config: TrainConfig) -> dict[str, Any]:
    """What makes two calibrations interchangeable (the map reuse key, with model and data)."""
    return {
        "outlier_strategy": config.outlier_strategy,
        "outlier_threshold": config.outlier_threshold,
        "outlier_max_ratio": config.outlier_max_ratio,
        "calibration_examples": config.calibration_examples,
        "max_seq_length": config.max_seq_length,
        "train_on_inputs": config.train_on_inputs,
    }
