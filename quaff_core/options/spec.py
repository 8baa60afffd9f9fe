"""The one option spec: every training option's name, API place, type, range, default and help.

`TrainConfig` checks its fields with it, the API resolves a job's options with it, the CLI
builds its flags from it, `GET /v1/fine_tuning/options` serves it and the docs table is
generated from it (`python -m quaff_core.options.spec`). Adding an option is one `Option(...)`
entry here plus its use. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Final

from quaff_core.options.field import ALL_LINEAR, WIRE_TYPES, Option, OptionError, show

__all__ = ["ALL_LINEAR", "OPTIONS", "Option", "OptionError"]

AUTO: Final = "auto"
BASE_LORA_LEARNING_RATE = 2e-4
DEFAULT_SEED = 42
API_GROUPS = ("hyperparameters", "lora", "peft", "quantization", "training")
METHODS = ("supervised", "dpo", "reinforcement")
PEFT_METHODS = ("lora", "ia3", "prefix_tuning", "prompt_tuning", "p_tuning")
PROMPT_METHODS = ("prefix_tuning", "prompt_tuning", "p_tuning")
# int8_scale (the default): channels ranked by how much of each token's int8 scale they hold up
OUTLIER_STRATEGIES = ("int8_scale", "mean_times", "top_abs", "zscore", "static")

H, L, P, Q, T = "hyperparameters.", "lora.", "peft.", "quantization.", "training."
OPTIONS: tuple[Option, ...] = (
    # OpenAI's hyperparameters ("auto" = the default)
    Option("n_epochs", "int", 3, "passes over the training file", api=H + "n_epochs",
           cli="--epochs", bounds="[1, 50]", auto=True),
    Option("batch_size", "int", 4, "examples per device step", api=H + "batch_size",
           cli="--batch-size", bounds="[1, 256]", auto=True),
    Option("learning_rate_multiplier", "float", 1.0,
           f"scales the base LoRA learning rate {BASE_LORA_LEARNING_RATE}",
           api=H + "learning_rate_multiplier", bounds="(0, 100]", library=False, auto=True),
    # OpenAI's `method.type` and the DPO hyperparameter (in `method.dpo.hyperparameters`)
    Option("method", "choice", "supervised",
           "supervised: next-token loss on the answers; dpo: preference pairs (DPO, TRL); "
           "reinforcement: samples scored by a grader (GRPO, TRL)",
           api="method.type", cli="--method", choices=METHODS),
    Option("dpo_beta", "float", 0.1,
           "DPO only: how far the tuned model may move from the reference (higher: less)",
           api=H + "beta", cli="--dpo-beta", bounds="(0, 2]", auto=True),
    # OpenAI's reinforcement hyperparameters (in `method.reinforcement.hyperparameters`)
    Option("rft_compute_multiplier", "float", 1.0,
           "reinforcement only: samples generated per prompt, 4 x this (at least 2)",
           api=H + "compute_multiplier", cli="--compute-multiplier", bounds="(0, 8]", auto=True),
    Option("rft_eval_interval", "int", 0,
           "reinforcement only: steps between validation passes (0: use training.n_evals)",
           api=H + "eval_interval", cli="--eval-interval", bounds="[0, 1000000]", auto=True),
    Option("rft_eval_samples", "int", 1,
           "reinforcement only: samples generated per validation prompt",
           api=H + "eval_samples", cli="--eval-samples", bounds="[1, 16]", auto=True),
    Option("rft_reasoning_effort", "choice", "default",
           "reinforcement only: 'default' (the models trained here do not reason in steps)",
           api=H + "reasoning_effort", choices=("default",), library=False),
    Option("rft_max_completion_tokens", "int", 64,
           "reinforcement only: most tokens of one generated sample",
           api=T + "max_completion_tokens", cli="--max-completion-tokens", bounds="[1, 4096]"),
    Option("seed", "int", DEFAULT_SEED, "random seed (data order, LoRA initialisation)",
           api="seed", cli="--seed", bounds="[0, 2147483647]"),
    # LoRA
    Option("lora_r", "int", 16, "LoRA rank", api=L + "r", cli="--lora-r", bounds="[1, 256]"),
    Option("lora_alpha", "float", 32.0, "LoRA alpha (the update is scaled by alpha / r)",
           api=L + "alpha", cli="--lora-alpha", bounds="(0, 4096]"),
    Option("lora_dropout", "float", 0.0, "dropout on the LoRA input", api=L + "dropout",
           cli="--lora-dropout", bounds="[0, 1)"),
    Option("lora_target_modules", "modules", ALL_LINEAR,
           f"'{ALL_LINEAR}' or the module names to adapt", api=L + "target_modules",
           cli="--lora-target-modules"),
    Option("use_rslora", "bool", False, "rank-stabilised LoRA: scale the update by alpha / sqrt(r)",
           api=L + "use_rslora", cli="--use-rslora"),
    Option("use_dora", "bool", False,
           "DoRA (weight-decomposed LoRA); needs an unquantized base (quantization.method none)",
           api=L + "use_dora", cli="--use-dora"),
    # the adapter method (PEFT)
    Option("peft_method", "choice", "lora",
           "the adapter: lora, ia3 (learned scaling vectors), or virtual tokens: prefix_tuning, "
           "prompt_tuning, p_tuning",
           api=P + "method", cli="--peft-method", choices=PEFT_METHODS),
    Option("num_virtual_tokens", "int", 20,
           "prefix_tuning, prompt_tuning, p_tuning: virtual tokens learned before each example",
           api=P + "num_virtual_tokens", cli="--num-virtual-tokens", bounds="[1, 512]"),
    # quantization and calibration
    Option("quantization", "choice", "quaff",
           "quaff: int8 base with outlier channels; none: unquantized base",
           api=Q + "method", cli="--quantization", choices=("quaff", "none")),
    Option("outlier_strategy", "choice", "int8_scale",
           "how calibration picks outlier channels (int8_scale: by the share of each token's int8 "
           "scale they hold up)",
           api=Q + "outlier_strategy", cli="--strategy", choices=OUTLIER_STRATEGIES),
    Option("outlier_threshold", "float", None,
           "the strategy's threshold (null: its own default, int8_scale 1, mean_times 100)",
           api=Q + "outlier_threshold", cli="--threshold", bounds="(0, 1000000]", nullable=True),
    Option("outlier_max_ratio", "float", 0.01, "most input channels per layer kept as outliers",
           api=Q + "outlier_max_ratio", cli="--max-ratio", bounds="(0, 0.5]"),
    Option("scale_beta", "float", 0.9,
           "weight of the new statistic in the outlier scale's moving average (1: no smoothing)",
           api=Q + "scale_beta", cli="--scale-beta", bounds="[0, 1]"),
    Option("compute_dtype", "choice", AUTO,
           "dtype of the base layers' compute (auto: bfloat16 where the device computes it "
           "natively, else float32)",
           api=Q + "compute_dtype", cli="--compute-dtype", choices=(AUTO, "float32", "bfloat16")),
    Option("compile", "choice", AUTO,
           "fuse the int8 quantize passes with torch.compile (auto: where inductor works; "
           "falls back to eager on a compile failure)",
           api=Q + "compile", cli="--compile", choices=(AUTO, True, False)),
    Option("calibration_examples", "int", 64, "training examples calibration looks at",
           api=Q + "calibration_examples", cli="--calibration-examples", bounds="[1, 4096]"),
    Option("outlier_map", "map_id", None, "reuse an earlier calibration (outlier map id)",
           api=Q + "outlier_map", library=False, nullable=True),
    Option("calibration_data", "choice", "base",
           "what a new outlier map is calibrated on: base (one map per base, calibrated once on "
           "a general chat set and reused by every later job on it) or job (this job's training "
           "file)",
           api=Q + "calibration_data", library=False, choices=("base", "job")),
    # the training loop
    Option("learning_rate", "float", BASE_LORA_LEARNING_RATE,
           "learning rate (null: the base rate times learning_rate_multiplier)",
           api=T + "learning_rate", cli="--lr", bounds="(0, 1]", nullable=True),
    Option("lr_scheduler", "choice", "cosine", "learning-rate schedule", api=T + "lr_scheduler",
           cli="--lr-scheduler", choices=("cosine", "linear", "constant")),
    Option("warmup_ratio", "float", 0.0, "share of the steps spent warming up",
           api=T + "warmup_ratio", cli="--warmup-ratio", bounds="[0, 1)"),
    Option("max_seq_length", "int", 1024, "longer examples are truncated",
           api=T + "max_seq_length", cli="--max-seq-length", bounds="[16, 32768]"),
    Option("gradient_accumulation_steps", "int", 1, "device steps per optimizer step",
           api=T + "gradient_accumulation_steps", cli="--grad-accum", bounds="[1, 1024]"),
    Option("devices", "int", 1,
           "data-parallel processes (devices of one host) training the job together; the "
           "effective batch is batch_size x devices x gradient_accumulation_steps",
           api=T + "devices", bounds="[1, 64]"),
    Option("weight_decay", "float", 0.0, "AdamW weight decay", api=T + "weight_decay",
           cli="--weight-decay", bounds="[0, 1]"),
    Option("max_grad_norm", "float", 1.0, "gradient clipping norm (0: no clipping)",
           api=T + "max_grad_norm", cli="--max-grad-norm", bounds="[0, 1000000]"),
    Option("train_on_inputs", "choice", AUTO,
           "auto: loss on assistant turns / completions only; true: on every token",
           api=T + "train_on_inputs", cli="--train-on-inputs", choices=(AUTO, True, False)),
    Option("group_by_length", "bool", True,
           "batch examples of similar length together (less padding; the order stays shuffled "
           "across batches)",
           api=T + "group_by_length", cli="--group-by-length"),
    Option("gradient_checkpointing", "bool", False,
           "recompute activations in backward: much less memory for long sequences, slower",
           api=T + "gradient_checkpointing", cli="--gradient-checkpointing"),
    Option("n_checkpoints", "int", 1, "checkpoints spread evenly over the run (one at the end)",
           api=T + "n_checkpoints", cli="--n-checkpoints", bounds="[1, 100]"),
    Option("n_evals", "int", 0, "validation passes spread evenly over the run (0: at the end)",
           api=T + "n_evals", cli="--n-evals", bounds="[0, 1000]"),
    # library and CLI only
    Option("save_steps", "int", 0, "checkpoint every N steps (0: use n_checkpoints)",
           cli="--save-steps", bounds="[0, 1000000000]"),
    Option("eval_steps", "int", 0, "evaluate every N steps (0: use n_evals)",
           cli="--eval-steps", bounds="[0, 1000000000]"),
    Option("max_steps", "int", 0, "stop after N optimizer steps (0: run every epoch)",
           cli="--max-steps", bounds="[0, 1000000000]"),
    Option("chunked_loss", "bool", True, "output head + loss in token chunks (saves memory)"),
)  # fmt: skip

# Generation (`POST /v1/chat/completions`, `/v1/completions`): top-level request fields, checked
# by `quaff_core.data.generation_request`; defaults apply when a field is absent or null.
GENERATION_OPTIONS: tuple[Option, ...] = (
    Option("max_tokens", "int", 256, "most tokens generated per choice", api="max_tokens",
           bounds="[1, 8192]", library=False, nullable=True),
    Option("temperature", "float", 1.0, "sampling temperature (0: greedy)", api="temperature",
           bounds="[0, 2]", library=False, nullable=True),
    Option("top_p", "float", 1.0, "nucleus sampling: smallest token set with this mass",
           api="top_p", bounds="(0, 1]", library=False, nullable=True),
    Option("n", "int", 1, "choices generated per prompt", api="n", bounds="[1, 4]",
           library=False, nullable=True),
    Option("seed", "int", None, "sampling seed (same seed and request: same output)",
           api="seed", bounds="[0, 9223372036854775807]", library=False, nullable=True),
    Option("top_logprobs", "int", 0, "most likely alternatives returned per token (chat)",
           api="top_logprobs", bounds="[0, 20]", library=False, nullable=True),
    Option("completion_logprobs", "int", 0, "alternatives per token (completions' logprobs)",
           api="logprobs", bounds="[0, 5]", library=False, nullable=True),
)  # fmt: skip
GENERATION: dict[str, Option] = {o.name: o for o in GENERATION_OPTIONS}

# API params that were renamed: a request that still sends one is told the new name
RENAMED = {Q + "momentum": Q + "scale_beta (the weight of the new value: 1 - momentum)"}

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
BY_PARAM: dict[str, Option] = {o.api: o for o in OPTIONS if o.api is not None}


def option(name: str) -> Option:
    """The option called `name` (a `TrainConfig` field or an API-only option)."""
    return BY_NAME[name]


def default(name: str) -> Any:
    """The default of option `name`."""
    return BY_NAME[name].default


def library_options() -> Iterator[Option]:
    """The options that are `TrainConfig` fields."""
    return (o for o in OPTIONS if o.library)


def group_options(group: str) -> list[Option]:
    """The API options inside the object `group` (`lora`, ...)."""
    return [o for o in OPTIONS if o.group == group]


def every(total: int, count: int) -> int:
    """Steps between `count` evenly spread events over `total` steps (0 = only at the end)."""
    if count <= 1:
        return 0
    return max(1, math.ceil(total / count))


def markdown_table() -> str:
    """The options as a Markdown table (docs/api.md embeds it; a test keeps it current)."""
    rows = ["| API param | CLI flag | type | default | range | meaning |", "|---" * 6 + "|"]
    for opt in OPTIONS:
        if opt.api is None and opt.cli is None:
            continue
        shown = "null" if opt.default is None else show(opt.default)
        rows.append(
            f"| `{opt.api or '-'}` | `{opt.cli or '-'}` | {WIRE_TYPES[opt.kind]} | {shown} | "
            f"{opt.range_text()} | {opt.help} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_table())
