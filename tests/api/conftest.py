"""API fixtures: the app on the test database, an in-process client, upload and job helpers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from store.settings import Settings
from tests.conftest import KeyedProject, chat_jsonl


@pytest.fixture
def app(quaff_settings: Settings) -> FastAPI:
    """The ASGI app on the test settings."""
    return create_app(quaff_settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An in-process HTTP client for the app (no auth header)."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


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
