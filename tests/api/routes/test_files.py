"""/v1/files: upload (validation, size limit, purpose), list, retrieve, content, delete."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.main import create_app
from store import files
from store.blobs import BlobStore
from store.models import File
from store.settings import Settings
from tests.helpers import (
    KeyedProject,
    chat_jsonl,
    created_job,
    make_project,
    upload,
    uploaded_file_id,
)
from tests.processes import wait_for


def _file_count(session: Session, project_id: str) -> int:
    return session.scalar(select(func.count()).where(File.project_id == project_id)) or 0


def _blob_files(settings: Settings) -> list[Path]:
    root = settings.blob_dir / "files"
    return sorted(p for p in root.iterdir() if p.is_file()) if root.exists() else []


def test_create_file_processed(client: TestClient, keyed_project: KeyedProject) -> None:
    data = chat_jsonl(12)
    response = upload(client, keyed_project, data, filename="../../etc/passwd")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "file"
    assert body["id"].startswith("file-")
    assert body["status"] == "processed"
    assert body["status_details"] is None
    assert body["bytes"] == len(data)
    assert body["purpose"] == "fine-tune"
    assert body["filename"] == "passwd"
    assert body["format"] == "chat"
    assert body["n_examples"] == 12
    assert body["sha256"] == hashlib.sha256(data).hexdigest()


def test_create_file_malformed_jsonl_names_the_line(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    data = chat_jsonl(2) + b"{not json\n"
    response = upload(client, keyed_project, data)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "error"
    assert body["status_details"].startswith("line 3:")


def test_create_file_wrong_purpose_stores_nothing(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
) -> None:
    response = upload(client, keyed_project, chat_jsonl(10), purpose="assistants")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "purpose"
    assert error["type"] == "invalid_request_error"
    assert "fine-tune" in error["message"]
    assert _file_count(db_session, keyed_project.project.id) == 0
    assert _blob_files(quaff_settings) == []


def test_create_file_too_large_stores_nothing(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session
) -> None:
    small = quaff_settings.model_copy(update={"max_upload_bytes": 100})
    with TestClient(create_app(small)) as small_client:
        response = upload(small_client, keyed_project, chat_jsonl(20))
    assert response.status_code == 413
    assert response.json()["error"] == {
        "message": "File is too large: the limit is 100 bytes.",
        "type": "invalid_request_error",
        "param": "file",
        "code": "file_too_large",
    }
    assert _file_count(db_session, keyed_project.project.id) == 0
    assert _blob_files(small) == []


def test_create_file_missing_file_part(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.post(
        "/v1/files", headers=keyed_project.headers, files={"purpose": (None, "fine-tune")}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file"


def test_list_files_newest_first_with_cursor(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    ids = [uploaded_file_id(client, keyed_project, n=1) for _ in range(3)]
    first = client.get("/v1/files?limit=2", headers=keyed_project.headers).json()
    assert [f["id"] for f in first["data"]] == [ids[2], ids[1]]
    assert first["has_more"] is True
    assert (first["first_id"], first["last_id"]) == (ids[2], ids[1])
    rest = client.get(f"/v1/files?after={ids[1]}", headers=keyed_project.headers).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False


def test_retrieve_file(client: TestClient, keyed_project: KeyedProject) -> None:
    file_id = uploaded_file_id(client, keyed_project)
    response = client.get(f"/v1/files/{file_id}", headers=keyed_project.headers)
    assert response.status_code == 200
    assert response.json()["id"] == file_id


def test_retrieve_file_not_found(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.get("/v1/files/file-nope", headers=keyed_project.headers)
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No file found with id 'file-nope'.",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }


def test_retrieve_file_of_another_project_is_not_found(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    file_id = uploaded_file_id(client, keyed_project)
    other = make_project(db_session)
    response = client.get(f"/v1/files/{file_id}", headers=other.headers)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"No file found with id '{file_id}'."
    listed = client.get("/v1/files", headers=other.headers).json()
    assert listed["data"] == []
    deleted = client.delete(f"/v1/files/{file_id}", headers=other.headers)
    assert deleted.status_code == 404
    assert client.get(f"/v1/files/{file_id}", headers=keyed_project.headers).status_code == 200


def test_file_content_returns_the_bytes(client: TestClient, keyed_project: KeyedProject) -> None:
    data = chat_jsonl(3)
    file_id = upload(client, keyed_project, data).json()["id"]
    response = client.get(f"/v1/files/{file_id}/content", headers=keyed_project.headers)
    assert response.status_code == 200
    assert response.content == data


def _blob_of(session: Session, settings: Settings, file_id: str) -> Path:
    row = session.get(File, file_id)
    assert row is not None
    return settings.blob_dir / row.blob_key


def _assert_marked_damaged(session: Session, file_id: str) -> None:
    session.expire_all()
    row = session.get(File, file_id)
    assert row is not None
    assert row.status == "error"
    assert "damaged" in (row.status_details or "")


@pytest.mark.parametrize("damage", ["truncated", "deleted", "changed"])
def test_file_content_of_a_damaged_blob_is_an_error_and_marks_it(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    damage: str,
) -> None:
    data = chat_jsonl(3)
    file_id = upload(client, keyed_project, data).json()["id"]
    path = _blob_of(db_session, quaff_settings, file_id)
    if damage == "truncated":
        path.write_bytes(data[:-5])
    elif damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(data.replace(b"Hi 1", b"Hi 7"))
    response = client.get(f"/v1/files/{file_id}/content", headers=keyed_project.headers)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "file_damaged"
    assert error["type"] == "server_error"
    assert "upload it again" in error["message"]
    _assert_marked_damaged(db_session, file_id)
    shown = client.get(f"/v1/files/{file_id}", headers=keyed_project.headers).json()
    assert shown["status"] == "error"


def test_file_content_of_a_large_changed_blob_stops_short_and_marks_it(
    app: FastAPI, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    data = chat_jsonl(40_000)  # a few MiB: the reply starts before the end is read
    with TestClient(app) as client:
        file_id = upload(client, keyed_project, data).json()["id"]
    path = _blob_of(db_session, quaff_settings, file_id)
    path.write_bytes(data[:-3] + b"}}\n")
    received = 0
    with TestClient(app, raise_server_exceptions=False) as client:
        url = f"/v1/files/{file_id}/content"
        with client.stream("GET", url, headers=keyed_project.headers) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(data))
            for chunk in response.iter_bytes():
                received += len(chunk)
    assert 0 < received < len(data)
    _assert_marked_damaged(db_session, file_id)


def test_a_large_upload_replies_uploaded_and_is_validated_after_the_reply(
    quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"inline_validation_bytes": 100})
    good, bad = chat_jsonl(12), chat_jsonl(11) + b"{not json\n"
    with TestClient(create_app(settings)) as client:
        replies = [upload(client, keyed_project, data).json() for data in (good, bad)]
        assert [(r["status"], r["n_examples"]) for r in replies] == [("uploaded", None)] * 2
        good_row, bad_row = (
            client.get(f"/v1/files/{r['id']}", headers=keyed_project.headers).json()
            for r in replies
        )
    assert (good_row["status"], good_row["n_examples"], good_row["format"]) == (
        "processed", 12, "chat"
    )  # fmt: skip
    assert bad_row["status"] == "error"
    assert "line 12" in bad_row["status_details"]


def test_an_upload_left_unvalidated_is_validated_when_the_api_starts(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    file_id, key = files.new_upload()
    blob = blobs.write_bytes(key, chat_jsonl(10))
    files.register_upload(
        db_session, blobs, keyed_project.project.id, file_id=file_id, blob=blob,
        filename="t.jsonl", purpose="fine-tune", pending=True,
    )  # fmt: skip
    body = {"model": "tiny-llama", "training_file": file_id}
    with TestClient(create_app(quaff_settings)) as client:
        refused = client.post("/v1/fine_tuning/jobs", headers=keyed_project.headers, json=body)
        wait_for(
            "the start-up validation",
            lambda: (
                client.get(f"/v1/files/{file_id}", headers=keyed_project.headers).json()["status"]
                == "processed"
            ),
            timeout=30,
        )
    if refused.status_code == 400:  # the job came before the validation: it is told to wait
        assert refused.json()["error"]["code"] == "file_not_ready"


def test_delete_file_removes_row_and_blob(
    client: TestClient, keyed_project: KeyedProject, quaff_settings: Settings
) -> None:
    file_id = uploaded_file_id(client, keyed_project)
    assert len(_blob_files(quaff_settings)) == 1
    response = client.delete(f"/v1/files/{file_id}", headers=keyed_project.headers)
    assert response.status_code == 200
    assert response.json() == {"id": file_id, "object": "file", "deleted": True}
    assert client.get(f"/v1/files/{file_id}", headers=keyed_project.headers).status_code == 404
    assert _blob_files(quaff_settings) == []


def test_delete_file_used_by_a_live_job_is_refused(
    client: TestClient, keyed_project: KeyedProject, app: FastAPI
) -> None:
    job = created_job(client, keyed_project)
    response = client.delete(f"/v1/files/{job['training_file']}", headers=keyed_project.headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "file_in_use"
    assert job["id"] in response.json()["error"]["message"]
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=keyed_project.headers)
    again = client.delete(f"/v1/files/{job['training_file']}", headers=keyed_project.headers)
    assert again.status_code == 200


def test_create_file_limit_is_enforced_while_streaming(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session
) -> None:
    small = quaff_settings.model_copy(update={"max_upload_bytes": 1000})
    body = (
        b"--B\r\n"
        b'Content-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        b"--B\r\n"
        b'Content-Disposition: form-data; name="file"; filename="t.jsonl"\r\n'
        b"Content-Type: application/jsonl\r\n\r\n" + chat_jsonl(100) + b"\r\n--B--\r\n"
    )

    def chunked() -> Iterator[bytes]:  # no Content-Length: only the streaming check can stop it
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    headers = {**keyed_project.headers, "Content-Type": "multipart/form-data; boundary=B"}
    with TestClient(create_app(small)) as small_client:
        response = small_client.post("/v1/files", headers=headers, content=chunked())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert _file_count(db_session, keyed_project.project.id) == 0
    assert _blob_files(small) == []


def test_create_file_wrong_key_stores_nothing(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    wrong = KeyedProject(project=keyed_project.project, key="sk-quaff-wrong")
    response = upload(client, wrong, chat_jsonl(10))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert _file_count(db_session, keyed_project.project.id) == 0
    assert _blob_files(quaff_settings) == []


def test_expires_after_sets_expires_at(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.post(
        "/v1/files",
        headers=keyed_project.headers,
        files={"file": ("t.jsonl", chat_jsonl(10), "application/jsonl")},
        data={
            "purpose": "fine-tune",
            "expires_after[anchor]": "created_at",
            "expires_after[seconds]": "3600",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_at"] == body["created_at"] + 3600
    again = client.get(f"/v1/files/{body['id']}", headers=keyed_project.headers).json()
    assert again["expires_at"] == body["expires_at"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "60"},
         "expires_after.seconds"),
        ({"expires_after[anchor]": "created_at", "expires_after[seconds]": "9" * 40},
         "expires_after.seconds"),
        ({"expires_after[anchor]": "last_active_at", "expires_after[seconds]": "3600"},
         "expires_after.anchor"),
        ({"expires_after[seconds]": "3600"}, "expires_after.anchor"),
    ],
)  # fmt: skip
def test_bad_expires_after_is_a_400_that_stores_nothing(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    fields: dict[str, str],
    param: str,
) -> None:
    response = client.post(
        "/v1/files",
        headers=keyed_project.headers,
        files={"file": ("t.jsonl", chat_jsonl(10), "application/jsonl")},
        data={"purpose": "fine-tune", **fields},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert _file_count(db_session, keyed_project.project.id) == 0
    assert _blob_files(quaff_settings) == []


def test_an_expired_file_is_gone(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    file_id = uploaded_file_id(client, keyed_project)
    row = db_session.get(File, file_id)
    assert row is not None
    row.expires_at = 1
    db_session.commit()
    assert client.get(f"/v1/files/{file_id}", headers=keyed_project.headers).status_code == 404
    listed = client.get("/v1/files", headers=keyed_project.headers).json()["data"]
    assert file_id not in [f["id"] for f in listed]
    job = client.post(
        "/v1/fine_tuning/jobs",
        headers=keyed_project.headers,
        json={"model": "tiny-llama", "training_file": file_id},
    )
    assert job.status_code == 400
    assert job.json()["error"]["param"] == "training_file"


def test_an_upload_cut_off_midway_leaves_nothing(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session, app: FastAPI
) -> None:
    head = (
        b"--B\r\n"
        b'Content-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        b"--B\r\n"
        b'Content-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n'
    )

    def cut() -> Iterator[bytes]:
        yield head + chat_jsonl(50)
        raise ConnectionResetError("client went away")

    headers = {**keyed_project.headers, "Content-Type": "multipart/form-data; boundary=B"}
    with TestClient(app, raise_server_exceptions=False) as client:
        try:
            response = client.post("/v1/files", headers=headers, content=cut())
        except ConnectionResetError:
            pass  # the client side of the cut
        else:
            assert response.status_code >= 400
    assert _file_count(db_session, keyed_project.project.id) == 0
    leftovers = [p for p in quaff_settings.blob_dir.rglob("*") if p.is_file()]
    assert leftovers == []
