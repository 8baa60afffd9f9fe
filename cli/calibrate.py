"""`quaff calibrate`: find a model's activation outlier channels on a JSONL file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cli.common import CliError
from cli.train import add_model_args, add_outlier_args, check_data, load_model


def register(subparsers: Any) -> None:
    """Add the `calibrate` subcommand."""
    parser = subparsers.add_parser(
        "calibrate", help="find outlier channels and save them as an outlier map (JSON)"
    )
    add_model_args(parser)
    parser.add_argument("--data", required=True, help="JSONL file of examples to calibrate on")
    parser.add_argument("--output", required=True, help="where to write the map (map.json)")
    add_outlier_args(parser)
    parser.add_argument("--examples", type=int, default=64, help="examples to use (default 64)")
    parser.add_argument("--max-seq-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Calibrate and save the map."""
    from quaff_core.callbacks import NullCallbacks
    from quaff_core.config import TrainConfig
    from quaff_core.data import read_examples
    from quaff_core.prepare import calibrate_on, describe_base
    from quaff_core.tokenize import PadCollator, tokenize_examples

    options = {
        "outlier_strategy": args.strategy,
        "outlier_threshold": args.threshold,
        "outlier_max_ratio": args.max_ratio,
    }
    try:
        config = TrainConfig(
            calibration_examples=args.examples,
            max_seq_length=args.max_seq_length,
            batch_size=args.batch_size,
            **{k: v for k, v in options.items() if v is not None},
        )
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from exc
    check_data(args.data, "calibration")
    model, tokenizer = load_model(args)
    dataset = tokenize_examples(
        read_examples(args.data),
        tokenizer,
        max_seq_length=config.max_seq_length,
        train_on_inputs=True,
    )
    print(f"Calibrating outlier channels on {min(args.examples, len(dataset))} examples")
    outlier_map = calibrate_on(
        model,
        dataset,
        PadCollator(int(tokenizer.pad_token_id)),
        config,
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
