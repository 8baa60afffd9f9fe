"""`TrainConfig`: every training option, named as in the API, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

SCHEDULERS = ("linear", "cosine", "constant")
QUANTIZATIONS = ("quaff", "none")
OUTLIER_STRATEGIES = ("mean_times", "top_abs", "zscore", "static")
COMPUTE_DTYPES = ("float32", "bfloat16")


def _check_int(name: str, value: Any, low: int) -> None:
    """ValueError/TypeError unless `value` is an int >= low."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float, *, open_low: bool) -> None:
    """ValueError/TypeError unless `value` is a finite number in the range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < low or (open_low and value == low) or value > high:
        bracket = "(" if open_low else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one fine-tuning run (API names; `eval_steps`/`save_steps` 0 = at end)."""

    n_epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 2e-4
    lr_scheduler: Literal["linear", "cosine", "constant"] = "cosine"
    warmup_ratio: float = 0.0
    max_seq_length: int = 1024
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    train_on_inputs: bool | Literal["auto"] = "auto"
    seed: int = 42
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str | tuple[str, ...] = "all-linear"
    quantization: Literal["quaff", "none"] = "quaff"
    outlier_strategy: Literal["mean_times", "top_abs", "zscore", "static"] = "mean_times"
    outlier_threshold: float = 100.0
    outlier_max_ratio: float = 0.01
    momentum: float = 0.9
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    compile: bool = False
    calibration_examples: int = 64
    eval_steps: int = 0
    save_steps: int = 0
    max_steps: int = 0
    chunked_loss: bool = True

    def __post_init__(self) -> None:
        """Range-check every field; errors name the field and the allowed values."""
        for name, low in (
            ("n_epochs", 1),
            ("batch_size", 1),
            ("max_seq_length", 2),
            ("gradient_accumulation_steps", 1),
            ("seed", 0),
            ("lora_r", 1),
            ("lora_alpha", 1),
            ("calibration_examples", 1),
            ("eval_steps", 0),
            ("save_steps", 0),
            ("max_steps", 0),
        ):
            _check_int(name, getattr(self, name), low)
        _check_float("learning_rate", self.learning_rate, 0.0, 1.0, open_low=True)
        _check_float("warmup_ratio", self.warmup_ratio, 0.0, 0.99, open_low=False)
        _check_float("weight_decay", self.weight_decay, 0.0, 1.0, open_low=False)
        _check_float("max_grad_norm", self.max_grad_norm, 0.0, 1e6, open_low=False)
        _check_float("lora_dropout", self.lora_dropout, 0.0, 0.99, open_low=False)
        _check_float("outlier_threshold", self.outlier_threshold, 0.0, 1e9, open_low=True)
        _check_float("outlier_max_ratio", self.outlier_max_ratio, 0.0, 1.0, open_low=True)
        _check_float("momentum", self.momentum, 0.0, 1.0, open_low=False)
        _check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check_choice("outlier_strategy", self.outlier_strategy, OUTLIER_STRATEGIES)
        _check_choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        if not isinstance(self.compile, bool):
            raise TypeError(f"compile must be true or false, got {self.compile!r}")
        if self.train_on_inputs not in (True, False, "auto"):
            raise ValueError(
                f"train_on_inputs must be true, false or 'auto', got {self.train_on_inputs!r}"
            )
        targets = self.lora_target_modules
        if isinstance(targets, list):
            object.__setattr__(self, "lora_target_modules", tuple(targets))
            targets = tuple(targets)
        if isinstance(targets, str):
            if targets != "all-linear":
                raise ValueError(
                    f"lora_target_modules must be 'all-linear' or a list of names, got {targets!r}"
                )
        elif not targets or not all(isinstance(t, str) and t for t in targets):
            raise ValueError(f"lora_target_modules must be non-empty names, got {targets!r}")

    def total_steps(self, n_examples: int) -> int:
        """Optimizer steps of a run over `n_examples` (as HF Trainer counts them)."""
        if self.max_steps:
            return self.max_steps
        batches = math.ceil(n_examples / self.batch_size)
        per_epoch = max(math.ceil(batches / self.gradient_accumulation_steps), 1)
        return self.n_epochs * per_epoch

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = asdict(self)
        if isinstance(self.lora_target_modules, tuple):
            data["lora_target_modules"] = list(self.lora_target_modules)
        return data
