"""`quaff worker`: run a Celery worker that consumes the fine-tuning queue."""

from __future__ import annotations

import argparse
from typing import Any

from store.queue import FINE_TUNE_QUEUE

POOLS = ("prefork", "solo", "threads")


def register(subparsers: Any) -> None:
    """Add the `worker` subcommand."""
    parser = subparsers.add_parser(
        "worker", help="run a training worker (broker and database from QUAFF_* settings)"
    )
    parser.add_argument(
        "--pool",
        choices=POOLS,
        default="prefork",
        help="prefork (default: training runs in a child process the worker supervises) or solo",
    )
    parser.add_argument("--hostname", default=None, help="Celery node name (default quaff@HOST)")
    parser.add_argument("--loglevel", default="INFO", help="log level (default INFO)")
    parser.set_defaults(handler=run)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The `celery worker` arguments: one job at a time from the fine-tuning queue."""
    argv = [
        "worker",
        f"--pool={args.pool}",
        "--concurrency=1",
        f"--queues={FINE_TUNE_QUEUE}",
        f"--loglevel={args.loglevel}",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    return argv


def run(args: argparse.Namespace) -> int:
    """Start the worker in this process until it is stopped (SIGTERM finishes the current step)."""
    from worker.celery_app import app  # celery and the worker load only when it runs

    app.worker_main(argv=worker_argv(args))
    return 0
