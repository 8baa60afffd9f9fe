"""`TrainConfig`: every library training option, checked against the one option spec."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from quaff_core.options.spec import (
    BASE_LORA_LEARNING_RATE,
    OptionError,
    default,
    every,
    library_options,
    option,
)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one fine-tuning run; each field is an option of the option spec."""

    n_epochs: int = default("n_epochs")
    batch_size: int = default("batch_size")
    learning_rate: float = default("learning_rate")
    lr_scheduler: Literal["linear", "cosine", "constant"] = default("lr_scheduler")
    warmup_ratio: float = default("warmup_ratio")
    max_seq_length: int = default("max_seq_length")
    gradient_accumulation_steps: int = default("gradient_accumulation_steps")
    devices: int = default("devices")
    weight_decay: float = default("weight_decay")
    max_grad_norm: float = default("max_grad_norm")
    train_on_inputs: bool | Literal["auto"] = default("train_on_inputs")
    seed: int = default("seed")
    method: Literal["supervised", "dpo", "reinforcement"] = default("method")
    dpo_beta: float = default("dpo_beta")
    rft_compute_multiplier: float = default("rft_compute_multiplier")
    rft_eval_interval: int = default("rft_eval_interval")
    rft_eval_samples: int = default("rft_eval_samples")
    rft_max_completion_tokens: int = default("rft_max_completion_tokens")
    peft_method: Literal["lora", "ia3", "prefix_tuning", "prompt_tuning", "p_tuning"] = default(
        "peft_method"
    )
    num_virtual_tokens: int = default("num_virtual_tokens")
    use_rslora: bool = default("use_rslora")
    use_dora: bool = default("use_dora")
    lora_r: int = default("lora_r")
    lora_alpha: float = default("lora_alpha")
    lora_dropout: float = default("lora_dropout")
    lora_target_modules: str | tuple[str, ...] = default("lora_target_modules")
    quantization: Literal["quaff", "none"] = default("quantization")
    outlier_strategy: str = default("outlier_strategy")
    outlier_threshold: float | None = default("outlier_threshold")
    outlier_max_ratio: float = default("outlier_max_ratio")
    scale_beta: float = default("scale_beta")
    compute_dtype: Literal["auto", "float32", "bfloat16"] = default("compute_dtype")
    compile: bool | Literal["auto"] = default("compile")
    calibration_examples: int = default("calibration_examples")
    gradient_checkpointing: bool = default("gradient_checkpointing")
    group_by_length: bool = default("group_by_length")
    n_checkpoints: int = default("n_checkpoints")
    n_evals: int = default("n_evals")
    save_steps: int = default("save_steps")
    eval_steps: int = default("eval_steps")
    max_steps: int = default("max_steps")
    chunked_loss: bool = default("chunked_loss")

    def __post_init__(self) -> None:
        """Check every field against its option; OptionError names the field and the range."""
        for opt in library_options():
            value = opt.check(getattr(self, opt.name))
            if value is None and opt.default is not None:
                raise OptionError(opt, "a value is required here")
            object.__setattr__(self, opt.name, value)
        if self.use_dora and self.quantization == "quaff":
            raise OptionError(
                option("use_dora"),
                "DoRA needs the base weight in full precision, which an int8 Quaff base does not "
                "keep; set quantization.method to 'none' or use_dora to false",
            )
        if (self.use_dora or self.use_rslora) and self.peft_method != "lora":
            raise OptionError(
                option("use_dora" if self.use_dora else "use_rslora"),
                f"applies to peft.method 'lora' only, not {self.peft_method!r}",
            )
        if self.method in ("dpo", "reinforcement") and self.devices > 1:
            raise OptionError(
                option("devices"),
                f"a {'DPO' if self.method == 'dpo' else 'reinforcement'} job trains on one "
                "device; set training.devices to 1",
            )

    def total_steps(self, n_examples: int) -> int:
        """Optimizer steps of a run over `n_examples` (as HF Trainer counts them)."""
        if self.max_steps:
            return self.max_steps
        # each process gets every `devices`-th batch of `batch_size` (accelerate's even shards)
        batches = math.ceil(math.ceil(n_examples / self.batch_size) / self.devices)
        per_epoch = max(math.ceil(batches / self.gradient_accumulation_steps), 1)
        return self.n_epochs * per_epoch

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step: batch_size x devices x gradient_accumulation_steps."""
        return self.batch_size * self.devices * self.gradient_accumulation_steps

    def save_every(self, total: int) -> int:
        """Steps between checkpoints (0: only at the end): `save_steps`, else `n_checkpoints`."""
        return self.save_steps or every(total, self.n_checkpoints)

    def eval_every(self, total: int) -> int:
        """Steps between evaluations (0: only at the end): `eval_steps`, a reinforcement job's
        `rft_eval_interval`, else `n_evals`."""
        interval = self.rft_eval_interval if self.method == "reinforcement" else 0
        return self.eval_steps or interval or every(total, self.n_evals)

    @property
    def rft_generations(self) -> int:
        """Samples generated per prompt of a reinforcement job: 4 x compute_multiplier, >= 2."""
        return max(2, round(4 * self.rft_compute_multiplier))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = asdict(self)
        if isinstance(self.lora_target_modules, tuple):
            data["lora_target_modules"] = list(self.lora_target_modules)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from `to_dict` output; unknown keys (older or newer versions) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def derived_learning_rate(learning_rate: float | None, multiplier: float | None) -> float:
    """The rate training uses: `learning_rate` when given, else the base LoRA rate times the
    API's `learning_rate_multiplier` (1 when absent)."""
    if learning_rate is not None:
        return learning_rate
    return BASE_LORA_LEARNING_RATE * (1.0 if multiplier is None else multiplier)


def config_from_api(values: Mapping[str, Any]) -> TrainConfig:
    """A config from API params (`lora.r` -> 16); a null learning rate is derived from the
    multiplier, which is checked here, where it is used (OptionError names either)."""
    kwargs: dict[str, Any] = {}
    for opt in library_options():
        if opt.api is not None and opt.api in values:
            kwargs[opt.name] = values[opt.api]
    if kwargs.get("learning_rate") is None:
        scale = option("learning_rate_multiplier")
        multiplier = values.get(scale.api or "")
        kwargs["learning_rate"] = derived_learning_rate(
            None, None if multiplier is None else scale.check(multiplier)
        )
    return TrainConfig(**kwargs)
