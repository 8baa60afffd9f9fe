"""`quaff eval`: loss and mean token accuracy of a base model or an adapter on a JSONL file."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.common import CliError
from cli.options import add_flags, build_config, flag_values
from cli.train import add_model_args, check_data, load_model
from quaff_core.data.jsonl import read_examples


def register(subparsers: Any) -> None:
    """Add the `eval` subcommand."""
    parser = subparsers.add_parser(
        "eval", help="loss and mean token accuracy on a JSONL file, to compare adapters"
    )
    add_model_args(parser)
    parser.add_argument("--adapter", help="adapter directory (or a `quaff train --output`)")
    parser.add_argument("--data", required=True, help="JSONL file to evaluate on")
    add_flags(parser, ("max_seq_length", "batch_size", "train_on_inputs"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the numbers."""
    import torch  # torch and the model stack load only when this command runs

    from quaff_core.adapters.loading import find_adapter_dir, load_adapter
    from quaff_core.lm.evaluation import evaluate
    from quaff_core.training.runtime import resolve_runtime

    config = build_config(flag_values(args))
    check_data(args.data, "evaluation")
    if args.adapter:
        try:
            find_adapter_dir(args.adapter)
        except ValueError as exc:
            raise CliError(str(exc)) from exc
    model, tokenizer = load_model(args)
    # the compute a training run would use here (--compute-dtype, auto by default), so that the
    # loss matches the run's validation loss: bf16 casts the model and evaluates under autocast
    bf16 = resolve_runtime(config).dtype == torch.bfloat16
    if bf16:
        model.to(torch.bfloat16)
    try:
        if args.adapter:
            model = load_adapter(model, args.adapter)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            result = evaluate(
                model,
                tokenizer,
                read_examples(args.data),
                max_seq_length=config.max_seq_length,
                train_on_inputs=config.train_on_inputs,
                batch_size=config.batch_size,
            )
    except ValueError as exc:
        raise CliError(str(exc).splitlines()[0]) from exc
    if args.json:
        print(json.dumps(result.__dict__))
    else:
        print(
            f"loss={result.loss:.4f} mean_token_accuracy={result.mean_token_accuracy:.4f} "
            f"({result.n_examples} examples, {result.n_tokens} labelled tokens"
            f"{f', {result.n_truncated} truncated' if result.n_truncated else ''})"
        )
    return 0
