"""`quaff train`: fine-tune LoRA adapters on a JSONL file from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cli.common import CliError

# flag -> TrainConfig field; flags left unset keep the default (or the resumed run's value)
CONFIG_FLAGS: dict[str, str] = {
    "epochs": "n_epochs",
    "batch_size": "batch_size",
    "lr": "learning_rate",
    "lr_scheduler": "lr_scheduler",
    "warmup_ratio": "warmup_ratio",
    "max_seq_length": "max_seq_length",
    "grad_accum": "gradient_accumulation_steps",
    "weight_decay": "weight_decay",
    "max_grad_norm": "max_grad_norm",
    "train_on_inputs": "train_on_inputs",
    "seed": "seed",
    "lora_r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "quantization": "quantization",
    "strategy": "outlier_strategy",
    "threshold": "outlier_threshold",
    "max_ratio": "outlier_max_ratio",
    "momentum": "momentum",
    "compute_dtype": "compute_dtype",
    "compile": "compile",
    "calibration_examples": "calibration_examples",
    "eval_steps": "eval_steps",
    "save_steps": "save_steps",
    "max_steps": "max_steps",
}


def _bool_or_auto(value: str) -> bool | str:
    """Parse --train-on-inputs."""
    lowered = value.lower()
    if lowered not in ("auto", "true", "false"):
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {value!r}")
    return "auto" if lowered == "auto" else lowered == "true"


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model and --cache-dir, shared by calibrate, train and eval."""
    parser.add_argument(
        "--model",
        required=True,
        help="tiny-llama, SmolLM2-135M-Instruct, a model directory, a .gguf file or a hub id",
    )
    parser.add_argument("--cache-dir", help="where converted models are cached (~/.cache/quaff)")


def add_outlier_args(parser: argparse.ArgumentParser) -> None:
    """Calibration options, shared by calibrate and train."""
    parser.add_argument("--strategy", choices=["mean_times", "top_abs", "zscore", "static"])
    parser.add_argument("--threshold", type=float, help="outlier threshold (default 100)")
    parser.add_argument("--max-ratio", type=float, help="max share of outlier channels (0.01)")


def register(subparsers: Any) -> None:
    """Add the `train` subcommand."""
    parser = subparsers.add_parser("train", help="fine-tune LoRA adapters on a JSONL file")
    add_model_args(parser)
    parser.add_argument("--data", required=True, help="training JSONL file")
    parser.add_argument("--validation", help="validation JSONL file")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--quantization", choices=["quaff", "none"])
    parser.add_argument("--outlier-map", help="reuse a map from `quaff calibrate`")
    parser.add_argument("--resume", help="a checkpoint directory, or an earlier --output")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="learning rate (default 2e-4)")
    parser.add_argument("--lr-scheduler", choices=["cosine", "linear", "constant"])
    parser.add_argument("--warmup-ratio", type=float)
    parser.add_argument("--max-seq-length", type=int)
    parser.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--max-grad-norm", type=float)
    parser.add_argument("--train-on-inputs", type=_bool_or_auto, metavar="{auto,true,false}")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--lora-r", type=int)
    parser.add_argument("--lora-alpha", type=int)
    parser.add_argument("--lora-dropout", type=float)
    add_outlier_args(parser)
    parser.add_argument("--momentum", type=float)
    parser.add_argument(
        "--compute-dtype",
        choices=["float32", "bfloat16"],
        help="bfloat16: base layers, attention and head in bf16 (faster on recent CPUs and GPUs)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="fuse the int8 quantize passes with torch.compile (faster after a slow first step)",
    )
    parser.add_argument("--calibration-examples", type=int)
    parser.add_argument("--eval-steps", type=int, help="evaluate every N steps (0: at the end)")
    parser.add_argument("--save-steps", type=int, help="checkpoint every N steps (0: at the end)")
    parser.add_argument("--max-steps", type=int, help="stop after N steps (0: run all epochs)")
    parser.set_defaults(handler=run)


def check_data(path: str, what: str) -> None:
    """CliError unless `path` is a valid training file."""
    from quaff_core.data import validate_jsonl

    if not Path(path).is_file():
        raise CliError(f"{what} file {path!r} does not exist")
    report = validate_jsonl(path)
    if not report.ok:
        raise CliError(f"{what} file {path!r}: {report.summary()}")


def load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load --model, turning load failures into CliError."""
    from quaff_core.models import load_base_model

    print(f"Loading base model {args.model}", file=sys.stderr, flush=True)
    try:
        return load_base_model(args.model, cache_dir=args.cache_dir)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


def find_checkpoint(path: str) -> Path:
    """A checkpoint dir, or the newest checkpoint of an earlier --output directory."""
    given = Path(path)
    if (given / "trainer_state.json").is_file():
        return given
    found = sorted(
        (given / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])
    )
    if not found:
        raise CliError(f"--resume {path!r}: no checkpoint there (nor under checkpoints/)")
    return found[-1]


def build_config(args: argparse.Namespace, resume: Path | None) -> Any:
    """TrainConfig from the flags, on top of the resumed run's options when resuming."""
    from quaff_core.config import TrainConfig

    values: dict[str, Any] = {}
    if resume is not None:
        values = json.loads((resume / "quaff.json").read_text()).get("config", {})
    for flag, name in CONFIG_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            values[name] = value
    if "lora_target_modules" in values and isinstance(values["lora_target_modules"], list):
        values["lora_target_modules"] = tuple(values["lora_target_modules"])
    try:
        return TrainConfig(**values)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Validate the inputs, train, and print where the adapter went."""
    from cli.progress import TerminalCallbacks
    from quaff_core.train import train

    resume = find_checkpoint(args.resume) if args.resume else None
    config = build_config(args, resume)
    check_data(args.data, "training")
    if args.validation:
        check_data(args.validation, "validation")
    if args.outlier_map and not Path(args.outlier_map).is_file():
        raise CliError(f"--outlier-map {args.outlier_map!r} does not exist")
    model = load_model(args)
    with TerminalCallbacks() as terminal:
        try:
            result = train(
                model,
                args.data,
                args.output,
                config=config,
                validation_data=args.validation,
                outlier_map=args.outlier_map,
                callbacks=terminal,
                resume_from=resume,
                base_model_id=_base_id(args.model),
            )
        except (ValueError, OSError) as exc:
            raise CliError(str(exc).splitlines()[0]) from exc
    if result.stopped == "paused":
        print(f"Paused at step {result.final_step}: resume with --resume {args.output}")
        return 0
    print(
        f"Trained {result.final_step} steps on {result.trained_tokens} tokens; "
        f"adapter saved to {result.adapter_dir}"
    )
    return 0


def _base_id(source: str) -> str:
    """The base model id recorded in quaff.json."""
    from quaff_core.prepare import describe_base

    return describe_base(os.path.expanduser(source) if source.startswith("~") else source)
