"""Entry point of the `quaff` console script: one parser, subcommands registered by modules."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from pydantic import ValidationError

from cli import api, calibrate, db, eval, export, infer, info, jobs, keys, serve, train, worker
from cli.common import CliError, package_version
from store.settings import settings_problem

# Each module exposes `register(subparsers)` and sets `handler` on its parsers.
COMMAND_MODULES: tuple[ModuleType, ...] = (
    info,
    db,
    keys,
    api,
    calibrate,
    train,
    eval,
    serve,
    worker,
    infer,
    jobs,
    export,
)

# Commands that create the service's files (database, broker, blobs, logs): owner-only modes.
PRIVATE_COMMANDS = frozenset({"db", "keys", "api", "serve", "worker", "infer"})

# Libraries whose INFO lines are noise at the command line (shown with --verbose).
QUIET_LOGGERS = ("alembic.runtime.plugins",)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="quaff",
        description="Quaff: fine-tune LLMs on your own machine with quantized LoRA.",
    )
    parser.add_argument("--version", action="version", version=f"quaff {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `quaff` command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.command in PRIVATE_COMMANDS:
        os.umask(0o077)  # keys, data and logs stay readable by the service's user only
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except CliError as exc:
        print(f"quaff {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"quaff {args.command}: error: {settings_problem(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"quaff {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
