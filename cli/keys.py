"""`quaff keys create|list|revoke`: API keys per project (the key is shown once, stored hashed)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from cli.common import CliError
from store.errors import StoreError

# The database layer (SQLAlchemy's models: a fifth of the command line's start-up) loads only
# when a keys command runs.


def register(subparsers: Any) -> None:
    """Add the `keys` command group."""
    parser = subparsers.add_parser("keys", help="create, list and revoke API keys")
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a key for a project (created if new)")
    create.add_argument("--project", required=True, help="project name")
    create.set_defaults(handler=create_key)
    listing = sub.add_parser("list", help="list keys (prefixes only)")
    listing.set_defaults(handler=list_keys)
    revoke = sub.add_parser("revoke", help="revoke a key by its id or its printed prefix")
    revoke.add_argument("key", metavar="KEY_PREFIX_OR_ID")
    revoke.set_defaults(handler=revoke_key)


def create_key(args: argparse.Namespace) -> int:
    """Print a new key once."""
    from store import auth
    from store.db import session_scope

    with session_scope() as session:
        try:
            _row, key = auth.create_key(session, args.project)
        except StoreError as exc:
            raise CliError(exc.message) from exc
    print(key)
    return 0


def list_keys(args: argparse.Namespace) -> int:
    """One line a key: id, prefix, project, created, state."""
    from store import auth
    from store.db import session_scope

    with session_scope() as session:
        for key, project in auth.list_keys(session):
            created = datetime.fromtimestamp(key.created_at, UTC).strftime("%Y-%m-%d %H:%M")
            state = "revoked" if key.revoked_at else "active"
            print(f"{key.id}  {key.prefix}...  {project.name}  {created}  {state}")
    return 0


def revoke_key(args: argparse.Namespace) -> int:
    """Revoke one key."""
    from store import auth
    from store.db import session_scope

    with session_scope() as session:
        try:
            row = auth.revoke_key(session, args.key)
        except StoreError as exc:
            raise CliError(exc.message) from exc
        print(f"revoked {row.id} ({row.prefix}...)")
    return 0
