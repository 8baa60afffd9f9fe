"""`quaff serve`: the REST API on 127.0.0.1:8000 plus one worker process (unless `--no-worker`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser("serve", help="serve the API and run one training worker")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--no-worker", action="store_true", help="serve the API only")
    parser.add_argument("--no-migrate", action="store_true", help="skip `quaff db upgrade`")
    parser.set_defaults(handler=run)


def start_worker() -> subprocess.Popen[bytes]:
    """`quaff worker` in its own process group, with this environment (so the same settings)."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", "worker"], start_new_session=True)


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the worker's group, then SIGKILL it; a job cut short resumes on the next worker."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("worker %d did not stop in %.0fs; killing it", process.pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run(args: argparse.Namespace) -> int:
    """Migrate, start the worker, serve the API until interrupted, then stop the worker."""
    import uvicorn

    from store import migrate

    if not args.no_migrate:
        migrate.upgrade()
    worker = None if args.no_worker else start_worker()
    try:
        uvicorn.run("api.main:create_app", factory=True, host=args.host, port=args.port)
    finally:
        if worker is not None:
            stop_worker(worker)
    return 0 if worker is None or worker.returncode in (0, -15, None) else 1
