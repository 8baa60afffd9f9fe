"""`quaff train`: fine-tune LoRA adapters on a JSONL file from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cli.common import CliError
from cli.options import add_flags, build_config, flag_values
from quaff_core.data.jsonl import validate_jsonl
from quaff_core.file_names import CHECKPOINT_PREFIX, CHECKPOINTS_DIR, QUAFF_FILE, TRAINER_STATE

# The training stack (torch, transformers, peft) is imported inside the functions that run it, so
# that every other `quaff` command starts without loading it.


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """--model and --cache-dir, shared by calibrate, train and eval."""
    parser.add_argument(
        "--model",
        required=True,
        help="tiny-llama, SmolLM2-135M-Instruct, a model directory, a .gguf file or a hub id",
    )
    parser.add_argument("--cache-dir", help="where converted models are cached (~/.cache/quaff)")


def register(subparsers: Any) -> None:
    """Add the `train` subcommand: its option flags come from the option spec."""
    parser = subparsers.add_parser("train", help="fine-tune LoRA adapters on a JSONL file")
    add_model_args(parser)
    parser.add_argument("--data", required=True, help="training JSONL file")
    parser.add_argument("--validation", help="validation JSONL file")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--outlier-map", help="reuse a map from `quaff calibrate`")
    parser.add_argument("--resume", help="a checkpoint directory, or an earlier --output")
    parser.add_argument(
        "--start-from",
        help="an earlier run's adapter or checkpoint directory: continue from its weights and map",
    )
    add_flags(parser)
    parser.set_defaults(handler=run)


def check_data(path: str, what: str) -> None:
    """CliError unless `path` is a valid training file."""
    if not Path(path).is_file():
        raise CliError(f"{what} file {path!r} does not exist")
    report = validate_jsonl(path)
    if not report.ok:
        raise CliError(f"{what} file {path!r}: {report.summary()}")


def load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """Load --model, turning load failures into CliError."""
    from quaff_core.models.loading import load_base_model

    print(f"Loading base model {args.model}", file=sys.stderr, flush=True)
    try:
        return load_base_model(args.model, cache_dir=args.cache_dir)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc


def find_checkpoint(path: str) -> Path:
    """A checkpoint dir, or the newest checkpoint of an earlier --output directory."""
    given = Path(path)
    if (given / TRAINER_STATE).is_file():
        return given
    found = sorted(
        (given / CHECKPOINTS_DIR).glob(f"{CHECKPOINT_PREFIX}*"),
        key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)),
    )
    if not found:
        raise CliError(f"--resume {path!r}: no checkpoint there (nor under {CHECKPOINTS_DIR}/)")
    return found[-1]


def resumed_options(resume: Path | None) -> dict[str, Any]:
    """The options a resumed run was trained with (empty for a new run)."""
    if resume is None:
        return {}
    facts = json.loads((resume / QUAFF_FILE).read_text(encoding="utf-8"))
    options: dict[str, Any] = facts.get("config", {})
    return options


def run(args: argparse.Namespace) -> int:
    """Validate the inputs, train, and print where the adapter went."""
    from cli.progress import TerminalCallbacks
    from quaff_core.adapters.loading import find_adapter_dir
    from quaff_core.training.train import train

    resume = find_checkpoint(args.resume) if args.resume else None
    config = build_config(flag_values(args), resumed_options(resume))
    if config.method == "reinforcement":
        raise CliError(
            "--method reinforcement needs a grader: create the job through the API "
            "(method.reinforcement.grader), or call quaff_core.training.train with reward="
        )
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
                start_from=find_adapter_dir(args.start_from) if args.start_from else None,
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
    from quaff_core.training.prepare import describe_base

    return describe_base(os.path.expanduser(source) if source.startswith("~") else source)
