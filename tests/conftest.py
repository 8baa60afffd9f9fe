"""Shared store/API fixtures: a database per backend (SQLite file, or a throw-away PostgreSQL schema
migrated with Alembic), settings with a private data directory, and API keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from store import migrate
from store.db import dispose_all, session_factory
from store.settings import Settings
from tests.helpers import PG_SERVER_URL, KeyedProject, make_project, pg_unreachable, unavailable


@pytest.fixture(scope="session", autouse=True)
def _dispose_engines_at_exit() -> Iterator[None]:
    """Close the shared engines once the session ends (before schemas are dropped)."""
    yield
    dispose_all()


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A database URL bound to a fresh PostgreSQL schema, dropped after the session."""
    reason = pg_unreachable()
    if reason:
        unavailable(reason)
    schema = f"quaff_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_SERVER_URL else "?"
    try:
        yield f"{PG_SERVER_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_session_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file shared by the session's tests."""
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'quaff.sqlite'}"


@pytest.fixture(scope="session")
def migrated_urls() -> dict[str, str]:
    """Database URLs already migrated to head in this session (so each migrates once)."""
    return {}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, migrated_urls: dict[str, str]) -> str:
    """A migrated database on each backend; tests isolate themselves by project."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_session_url")
    else:
        url = request.getfixturevalue("pg_schema_url")
    if url not in migrated_urls:
        migrate.upgrade(Settings(database_url=url))
        migrated_urls[url] = "head"
    return url


@pytest.fixture
def quaff_settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings with a private data directory (blobs, embedded broker) on the test database."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def db_session(quaff_settings: Settings) -> Iterator[Session]:
    """A session on the test database."""
    with session_factory(quaff_settings)() as session:
        yield session


@pytest.fixture
def keyed_project(db_session: Session) -> KeyedProject:
    """A fresh project and its API key."""
    return make_project(db_session)
