"""Run the Alembic migrations programmatically (used by `quaff db` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from store.db import make_engine
from store.settings import Settings, get_settings

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings | None = None) -> Config:
    """An Alembic config pointing at our migrations and the settings' database URL."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    url = (settings or get_settings()).database_url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(settings: Settings | None = None, revision: str = "head") -> None:
    """Upgrade the database to `revision`."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(revision: str, settings: Settings | None = None) -> None:
    """Downgrade the database to `revision` (e.g. 'base')."""
    command.downgrade(alembic_config(settings), revision)


def current_revision(settings: Settings | None = None) -> str | None:
    """The revision the database is at (None when never migrated)."""
    engine = make_engine((settings or get_settings()).database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision in the scripts."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
