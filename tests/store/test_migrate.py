"""Alembic: the initial revision creates exactly the models' schema; upgrade and downgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from store import migrate
from store.db import make_engine
from store.models import Base
from store.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A database with no tables: a new SQLite file or the session's PostgreSQL schema emptied."""
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'm.sqlite'}")
    url: str = request.getfixturevalue("pg_schema_url")
    migrated: dict[str, str] = request.getfixturevalue("migrated_urls")
    settings = Settings(data_dir=tmp_path, database_url=url)
    if migrated.pop(url, None):
        migrate.downgrade("base", settings)
    return settings


def test_upgrade_creates_the_models_schema_exactly(empty_database: Settings) -> None:
    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.head_revision()
    engine = make_engine(empty_database.database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert diff == []
    assert set(Base.metadata.tables) <= tables


def test_downgrade_removes_every_table(empty_database: Settings) -> None:
    migrate.upgrade(empty_database)
    migrate.downgrade("base", empty_database)
    assert migrate.current_revision(empty_database) is None
    engine = make_engine(empty_database.database_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert tables.isdisjoint(Base.metadata.tables)
    migrate.upgrade(empty_database)  # and back up, so the session's schema stays usable
    assert migrate.current_revision(empty_database) == migrate.head_revision()
