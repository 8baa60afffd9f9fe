"""`quaff infer`: run an inference node (generation, evaluations, exports) for the API."""

from __future__ import annotations

import argparse
from typing import Any

from store.settings import get_settings


def register(subparsers: Any) -> None:
    """Add the `infer` subcommand."""
    parser = subparsers.add_parser(
        "infer", help="run an inference node that the API forwards chat/completions to"
    )
    parser.add_argument("--host", default=None, help="bind address (default QUAFF_INFER_HOST)")
    parser.add_argument("--port", type=int, default=None, help="port (default QUAFF_INFER_PORT)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM; the node registers in the database and beats."""
    from infer.node import run_node  # torch and the model stack load only when it runs

    settings = get_settings()
    updates = {k: v for k, v in (("infer_host", args.host), ("infer_port", args.port)) if v}
    run_node(settings.model_copy(update=updates) if updates else settings)
    return 0
