"""`quaff db upgrade|downgrade|current|stats`: run the Alembic migrations from any directory, and
report what the data directory holds."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cli.common import CliError
from store.settings import get_settings

# alembic and the database layer (SQLAlchemy's models) load only when a db command runs: they
# are about a third of the command line's start-up.


def register(subparsers: Any) -> None:
    """Add the `db` command group."""
    parser = subparsers.add_parser("db", help="migrate the database (QUAFF_DATABASE_URL)")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = sub.add_parser("upgrade", help="upgrade to the newest schema (or --revision)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(handler=upgrade)
    down = sub.add_parser("downgrade", help="downgrade to REVISION ('base' removes every table)")
    down.add_argument("revision", help="target revision, e.g. base or -1")
    down.set_defaults(handler=downgrade)
    current = sub.add_parser("current", help="print the revision the database is at")
    current.set_defaults(handler=show_current)
    stats = sub.add_parser("stats", help="print the data directory's size and each project's share")
    stats.set_defaults(handler=show_stats)


def upgrade(args: argparse.Namespace) -> int:
    """Upgrade the configured database."""
    from store import migrate

    settings = get_settings()
    try:
        migrate.upgrade(settings, args.revision)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot migrate {_safe(settings.database_url)}: {exc}") from exc
    print(f"database at revision {migrate.current_revision(settings)}")
    return 0


def downgrade(args: argparse.Namespace) -> int:
    """Downgrade the configured database."""
    from store import migrate

    settings = get_settings()
    try:
        migrate.downgrade(args.revision, settings)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot migrate {_safe(settings.database_url)}: {exc}") from exc
    print(f"database at revision {migrate.current_revision(settings) or 'base'}")
    return 0


def show_current(args: argparse.Namespace) -> int:
    """Print the current and head revisions."""
    from store import migrate

    settings = get_settings()
    try:
        current = migrate.current_revision(settings)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot read {_safe(settings.database_url)}: {exc}") from exc
    head = migrate.head_revision()
    state = "up to date" if current == head else f"head is {head}; run `quaff db upgrade`"
    print(f"{current or 'base'} ({state})")
    return 0


def show_stats(args: argparse.Namespace) -> int:
    """The data directory on disk, and the bytes each project's rows point at."""
    from store import usage
    from store.db import session_scope

    settings = get_settings()
    try:
        with session_scope(settings) as session:
            projects = usage.all_projects_usage(session)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot read {_safe(settings.database_url)}: {exc}") from exc
    print(f"{settings.data_dir}: {_size(usage.directory_bytes(settings.data_dir))} on disk")
    print(f"  blobs: {_size(usage.directory_bytes(settings.blob_dir))}")
    kinds = ("files", "adapters", "checkpoints", "exports", "outlier_maps")
    print(f"{'project':<32} {'total':>10} " + " ".join(f"{k:>14}" for k in kinds))
    for found in projects:
        cells = " ".join(
            f"{_size(found.kinds[k].bytes):>9} ({found.kinds[k].count:>2})" for k in kinds
        )
        print(f"{found.name[:32]:<32} {_size(found.bytes):>10} {cells}")
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _safe(url: str) -> str:
    """The URL without its password."""
    return make_url(url).render_as_string(hide_password=True)
