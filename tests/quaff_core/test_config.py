"""Tests of `TrainConfig` validation."""

from __future__ import annotations

from typing import Any

import pytest

from quaff_core.config import TrainConfig


def test_defaults_match_the_api() -> None:
    config = TrainConfig()
    assert (config.learning_rate, config.lr_scheduler, config.max_seq_length) == (
        2e-4,
        "cosine",
        1024,
    )
    assert (config.lora_r, config.lora_alpha, config.lora_target_modules) == (16, 32, "all-linear")
    assert (config.quantization, config.outlier_strategy, config.momentum) == (
        "quaff",
        "mean_times",
        0.9,
    )
    assert config.to_dict()["train_on_inputs"] == "auto"


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("n_epochs", 0, ValueError, "n_epochs must be >= 1, got 0"),
        ("batch_size", 2.5, TypeError, "batch_size must be an int"),
        ("batch_size", True, TypeError, "batch_size must be an int"),
        ("learning_rate", 0.0, ValueError, r"learning_rate must be in \(0.0, 1.0\]"),
        ("learning_rate", float("nan"), TypeError, "learning_rate must be a finite number"),
        ("warmup_ratio", 1.0, ValueError, r"warmup_ratio must be in \[0.0, 0.99\]"),
        (
            "lr_scheduler",
            "step",
            ValueError,
            "lr_scheduler must be one of linear, cosine, constant",
        ),
        ("quantization", "int4", ValueError, "quantization must be one of quaff, none"),
        ("outlier_strategy", "max", ValueError, "outlier_strategy must be one of mean_times"),
        ("outlier_max_ratio", 0.0, ValueError, "outlier_max_ratio must be in"),
        ("momentum", 1.5, ValueError, "momentum must be in"),
        ("train_on_inputs", "yes", ValueError, "train_on_inputs must be true, false or 'auto'"),
        (
            "lora_target_modules",
            "attention",
            ValueError,
            "lora_target_modules must be 'all-linear'",
        ),
        ("lora_target_modules", (), ValueError, "lora_target_modules must be non-empty names"),
        ("max_seq_length", 1, ValueError, "max_seq_length must be >= 2"),
        ("save_steps", -1, ValueError, "save_steps must be >= 0"),
    ],
)
def test_bad_values_name_the_field(field: str, value: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        TrainConfig(**{field: value})


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
