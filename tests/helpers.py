"""Test helpers (imported by tests; conftest files only hold fixtures): services that must be
up, projects and keys, training files, jobs through the store or the API."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from store.auth import create_key
from store.blobs import BlobStore
from store.files import new_upload, register_upload
from store.jobs import create_job
from store.models import File, Job, Project
from store.settings import Settings

PG_SERVER_URL = os.environ.get(
    "QUAFF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("QUAFF_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
# CI sets this: a missing PostgreSQL or Redis then fails the run instead of skipping tests
REQUIRE_SERVICES = os.environ.get("QUAFF_REQUIRE_SERVICES", "") == "1"


def unavailable(reason: str) -> None:
    """Skip the test because a server is down, or fail it when CI requires the servers."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (QUAFF_REQUIRE_SERVICES=1: PostgreSQL and Redis must be up)")
    pytest.skip(reason)


def pg_unreachable() -> str | None:
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


def redis_unreachable(url: str = REDIS_URL) -> str | None:
    """None when the Redis test server answers, else why not."""
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {url} is not reachable: {exc}"
    return None


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


def upload(
    client: TestClient,
    keyed: KeyedProject,
    data: bytes,
    *,
    purpose: str = "fine-tune",
    filename: str = "train.jsonl",
) -> Any:
    """POST /v1/files and return the response."""
    return client.post(
        "/v1/files",
        headers=keyed.headers,
        files={"file": (filename, data, "application/jsonl")},
        data={"purpose": purpose},
    )


def uploaded_file_id(client: TestClient, keyed: KeyedProject, n: int = 10) -> str:
    """Upload `n` valid chat examples and return the file id."""
    response = upload(client, keyed, chat_jsonl(n))
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


def created_job(client: TestClient, keyed: KeyedProject, **body: Any) -> dict[str, Any]:
    """Create a job on a fresh valid training file and return its JSON."""
    payload = {"model": "tiny-llama", "training_file": uploaded_file_id(client, keyed), **body}
    response = client.post("/v1/fine_tuning/jobs", headers=keyed.headers, json=payload)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def reloaded(session: Session, job: Job) -> Job:
    """The job row as stored now (the session's cached state dropped)."""
    session.expire_all()
    row = session.get(Job, job.id)
    if row is None:
        raise LookupError(f"job {job.id} is gone")
    return row
