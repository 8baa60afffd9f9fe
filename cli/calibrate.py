"""`quaff calibrate`: find a model's activation outlier channels on a JSONL file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import CliError
from cli.options import add_flags, build_config, flag_values
from cli.train import add_model_args, check_data, load_model
from quaff_core.data.jsonl import read_examples

CALIBRATION_OPTIONS = (
    "outlier_strategy",
    "outlier_threshold",
    "outlier_max_ratio",
    "calibration_examples",
    "max_seq_length",
    "batch_size",
    "train_on_inputs",
)


def register(subparsers: Any) -> None:
    """Add the `calibrate` subcommand."""
    parser = subparsers.add_parser(
        "calibrate", help="find outlier channels and save them as an outlier map (JSON)"
    )
    add_model_args(parser)
    parser.add_argument("--data", required=True, help="JSONL file of examples to calibrate on")
    parser.add_argument("--output", required=True, help="where to write the map (map.json)")
    add_flags(parser, CALIBRATION_OPTIONS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate on the calibration set `quaff train` would use, and save the map."""
    # the training stack loads only when this command runs
    from quaff_core.training.callbacks import NullCallbacks
    from quaff_core.training.datasets import tokenize_for
    from quaff_core.training.prepare import calibrate_on, describe_base

    config = build_config(flag_values(args))
    check_data(args.data, "calibration")
    model, tokenizer = load_model(args)
    try:
        dataset = tokenize_for(read_examples(args.data), tokenizer, config, "calibration")
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(
        f"Calibrating outlier channels on {min(config.calibration_examples, len(dataset))} examples"
    )
    outlier_map = calibrate_on(
        model,
        dataset,
        config,
        pad_token_id=int(tokenizer.pad_token_id),
        model_id=describe_base(args.model),
        callbacks=NullCallbacks(),
    )
    try:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        outlier_map.save(args.output)
    except OSError as exc:
        raise CliError(f"cannot write {args.output!r}: {exc.strerror}") from exc
    print(
        f"Found {outlier_map.num_channels} outlier channels in {len(outlier_map.layers)} layers "
        f"({outlier_map.tokens_seen} tokens, {outlier_map.strategy}); saved {args.output}"
    )
    return 0
