"""`quaff api`: serve only the REST API with uvicorn (no worker)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import SHUTDOWN_GRACE_SECONDS


def register(subparsers: Any) -> None:
    """Add the `api` subcommand."""
    parser = subparsers.add_parser("api", help="serve the REST API (uvicorn, no worker)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--no-migrate", action="store_true", help="skip `quaff db upgrade`")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Migrate the database, then serve `api.main:create_app` until interrupted."""
    import uvicorn  # the server and alembic load only when `quaff api` runs

    from store import migrate
    from store.settings import get_settings

    if not args.no_migrate:
        migrate.upgrade()
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        access_log=get_settings().access_log,
    )
    return 0
