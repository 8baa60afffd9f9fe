"""The OpenAI error envelope everywhere (ours and the framework's), auth, and `x-request-id`."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.blobs import BlobStore
from store.models import File, Job
from tests.helpers import KeyedProject


def test_unknown_url_is_an_enveloped_404(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.get("/v1/nothing-here", headers=keyed_project.headers)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Unknown request URL: GET /v1/nothing-here.",
            "type": "not_found_error",
            "param": None,
            "code": "unknown_url",
        }
    }
    assert response.headers["x-request-id"].startswith("req_")


def test_wrong_method_is_an_enveloped_405(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.put("/v1/files", headers=keyed_project.headers)
    assert response.status_code == 405
    assert response.json()["error"] == {
        "message": "Method PUT is not allowed for /v1/files.",
        "type": "invalid_request_error",
        "param": None,
        "code": "method_not_allowed",
    }


def test_body_that_is_not_an_object_is_a_400(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    response = client.post("/v1/fine_tuning/jobs", headers=keyed_project.headers, json=[1, 2])
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


def _row_counts(session: Session) -> tuple[int, int]:
    files = session.scalar(select(func.count()).select_from(File)) or 0
    jobs = session.scalar(select(func.count()).select_from(Job)) or 0
    return files, jobs


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "You didn't provide an API key. Send 'Authorization: Bearer <key>'."),
        ({"Authorization": "Bearer sk-quaff-wrong"}, "Incorrect API key provided: sk-quaff-wrong"),
        (
            {"Authorization": "Basic abc"},
            "You didn't provide an API key. Send 'Authorization: Bearer <key>'.",
        ),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/files"),
        ("POST", "/v1/files"),
        ("GET", "/v1/fine_tuning/jobs"),
        ("POST", "/v1/fine_tuning/jobs"),
        ("GET", "/v1/models"),
        ("GET", "/v1/outlier_maps"),
    ],
)
def test_missing_or_wrong_key_is_401(
    client: TestClient,
    db_session: Session,
    headers: dict[str, str],
    message: str,
    method: str,
    path: str,
) -> None:
    before = _row_counts(db_session)
    response = client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert _row_counts(db_session) == before
    assert response.json() == {
        "error": {
            "message": message,
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


def test_client_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert client.get("/healthz").headers["x-request-id"].startswith("req_")


def test_unhandled_error_is_an_enveloped_500_with_request_id(
    client: TestClient, keyed_project: KeyedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_id = client.post(
        "/v1/files",
        headers=keyed_project.headers,
        files={"file": ("t.jsonl", b'{"text": "x"}\n')},
        data={"purpose": "fine-tune"},
    ).json()["id"]

    def broken(*_args: object) -> None:
        raise RuntimeError("the disk went away")  # a fault no handler knows

    monkeypatch.setattr(BlobStore, "iter_verified", broken)
    response = client.get(f"/v1/files/{file_id}/content", headers=keyed_project.headers)
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    assert response.headers["x-request-id"].startswith("req_")
