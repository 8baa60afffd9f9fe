"""Tests of `TrainConfig` validation."""

from __future__ import annotations

from typing import Any

import pytest

from quaff_core.options.spec import OptionError
from quaff_core.options.train_config import TrainConfig


def test_defaults_match_the_api() -> None:
    config = TrainConfig()
    assert (config.learning_rate, config.lr_scheduler, config.max_seq_length) == (
        2e-4,
        "cosine",
        1024,
    )
    assert (config.lora_r, config.lora_alpha, config.lora_target_modules) == (
        16,
        32.0,
        "all-linear",
    )
    assert config.seed == 42
    assert (config.quantization, config.outlier_strategy, config.scale_beta) == (
        "quaff",
        "int8_scale",
        0.9,
    )
    assert config.to_dict()["train_on_inputs"] == "auto"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_epochs", 0, r"n_epochs: 0 is out of range; it must be in \[1, 50\]"),
        ("batch_size", 2.5, "batch_size: expected an integer, got 2.5"),
        ("batch_size", True, "batch_size: expected an integer, got True"),
        ("learning_rate", 0.0, r"learning_rate: 0.0 is out of range; it must be in \(0, 1\]"),
        ("learning_rate", float("nan"), "learning_rate: nan is out of range"),
        ("warmup_ratio", 1.0, r"warmup_ratio: 1.0 is out of range; it must be in \[0, 1\)"),
        ("lr_scheduler", "step", "lr_scheduler: expected one of cosine, linear, constant"),
        ("quantization", "int4", "quantization: expected one of quaff, none, got 'int4'"),
        ("outlier_strategy", "max", "outlier_strategy: expected one of int8_scale, mean_times"),
        ("outlier_max_ratio", 0.0, "outlier_max_ratio: 0.0 is out of range"),
        ("scale_beta", 1.5, r"scale_beta: 1.5 is out of range; it must be in \[0, 1\]"),
        ("compute_dtype", "float16", "compute_dtype: expected one of auto, float32, bfloat16"),
        ("compile", "yes", "compile: expected one of auto, true, false"),
        ("train_on_inputs", "yes", "train_on_inputs: expected one of auto, true, false"),
        ("lora_target_modules", "attention", "lora_target_modules: expected 'all-linear'"),
        ("lora_target_modules", (), "lora_target_modules: expected 'all-linear'"),
        ("max_seq_length", 1, r"max_seq_length: 1 is out of range; it must be in \[16, 32768\]"),
        ("save_steps", -1, "save_steps: -1 is out of range"),
        ("learning_rate", None, "learning_rate: a value is required here"),
    ],
)
def test_bad_values_name_the_field(field: str, value: Any, message: str) -> None:
    with pytest.raises(OptionError, match=message) as exc:
        TrainConfig(**{field: value})
    assert exc.value.option.name == field


def test_target_module_lists_become_tuples() -> None:
    config = TrainConfig(lora_target_modules=["q_proj", "v_proj"])  # type: ignore[arg-type]
    assert config.lora_target_modules == ("q_proj", "v_proj")
    assert config.to_dict()["lora_target_modules"] == ["q_proj", "v_proj"]
    assert TrainConfig(**config.to_dict()) == config


def test_total_steps_counts_optimizer_steps() -> None:
    assert TrainConfig(n_epochs=3, batch_size=4).total_steps(10) == 9
    assert TrainConfig(n_epochs=2, batch_size=2, gradient_accumulation_steps=2).total_steps(10) == 6
    assert TrainConfig(n_epochs=1, batch_size=8, gradient_accumulation_steps=4).total_steps(3) == 1
    assert TrainConfig(max_steps=5).total_steps(1000) == 5


def test_schedules_come_from_counts_unless_steps_are_given() -> None:
    assert TrainConfig(n_checkpoints=1).save_every(100) == 0
    assert TrainConfig(n_checkpoints=4).save_every(100) == 25
    assert TrainConfig(n_checkpoints=4, save_steps=7).save_every(100) == 7
    assert TrainConfig(n_evals=3).eval_every(10) == 4
    assert TrainConfig(eval_steps=2).eval_every(10) == 2


def test_from_dict_ignores_unknown_keys() -> None:
    config = TrainConfig(lora_r=8)
    assert TrainConfig.from_dict({**config.to_dict(), "retired_option": 1}) == config


def test_a_dpo_job_trains_on_one_device() -> None:
    assert TrainConfig(method="dpo", devices=1).devices == 1
    with pytest.raises(OptionError, match="a DPO job trains on one device"):
        TrainConfig(method="dpo", devices=2)
