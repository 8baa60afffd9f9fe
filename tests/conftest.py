"""Shared store/API fixtures: a database per backend (SQLite file, or a throw-away PostgreSQL schema
migrated with Alembic), settings with a private data directory, and API keys."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from store import migrate
from store.auth import create_key
from store.blobs import BlobStore
from store.db import dispose_all, session_factory
from store.files import new_upload, register_upload
from store.jobs import create_job
from store.models import File, Job, Project
from store.settings import Settings

PG_SERVER_URL = os.environ.get(
    "QUAFF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_reachable() -> str | None:
    """None when the PostgreSQL test server answers, else why not."""
    engine = create_engine(PG_SERVER_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return f"PostgreSQL at {PG_SERVER_URL} is not reachable: {str(exc).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


@pytest.fixture(scope="session", autouse=True)
def _dispose_engines_at_exit() -> Iterator[None]:
    """Close the shared engines once the session ends (before schemas are dropped)."""
    yield
    dispose_all()


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A database URL bound to a fresh PostgreSQL schema, dropped after the session."""
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
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


@dataclass(frozen=True)
class KeyedProject:
    """A project created for one test, with a working API key."""

    project: Project
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_project(session: Session) -> KeyedProject:
    """Create a uniquely named project and a key for it."""
    row, key = create_key(session, f"test-{uuid.uuid4().hex[:10]}")
    project = session.get(Project, row.project_id)
    if project is None:
        raise LookupError("the key's project was not created")
    return KeyedProject(project=project, key=key)


@pytest.fixture
def keyed_project(db_session: Session) -> KeyedProject:
    """A fresh project and its API key."""
    return make_project(db_session)


def chat_jsonl(n: int) -> bytes:
    """`n` valid chat examples as JSONL bytes."""
    return b"".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Hi {i}"},
                    {"role": "assistant", "content": f"Hello {i}"},
                ]
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def store_training_file(session: Session, settings: Settings, project_id: str, data: bytes) -> File:
    """Upload `data` through the store (as the API does) and return the File row."""
    blobs = BlobStore(settings.blob_dir)
    file_id, key = new_upload()
    info = blobs.write_bytes(key, data)
    return register_upload(
        session,
        blobs,
        project_id,
        file_id=file_id,
        blob=info,
        filename="train.jsonl",
        purpose="fine-tune",
    )


def queued_job(session: Session, settings: Settings, keyed: KeyedProject, **body: Any) -> Job:
    """A job created through the store on a fresh 10-example training file (status queued)."""
    train = store_training_file(session, settings, keyed.project.id, chat_jsonl(10))
    return create_job(
        session,
        settings,
        keyed.project.id,
        {"model": "tiny-llama", "training_file": train.id, **body},
    )
