"""Every bad input of issue 13 is a 4xx in the error envelope and changes nothing stored (rows
and blobs), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.routes.checkpoints import parse_range
from store.files import display_name
from store.models import Adapter, ApiKey, Checkpoint, File, Job, JobEvent, OutlierMap, Project
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl, created_job, upload, uploaded_file_id

TABLES = (Project, ApiKey, File, Job, JobEvent, Checkpoint, OutlierMap, Adapter)


def snapshot(session: Session, settings: Settings) -> tuple[list[int], list[str]]:
    """Row counts of every table and every file under the blob directory."""
    session.expire_all()
    counts = [session.scalar(select(func.count()).select_from(t)) or 0 for t in TABLES]
    root = settings.blob_dir
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return counts, files


def assert_refused(response: Any, status: int = 400, param: str | None = "any") -> dict[str, Any]:
    assert 400 <= response.status_code < 500, response.text
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param != "any":
        assert error["param"] == param
    return error


BIG = "9" * 400


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"hyperparameters": {"learning_rate_multiplier": int(BIG)}}, None),
        ({"lora": {"alpha": int(BIG)}}, "lora.alpha"),
        ({"training": {"learning_rate": int(BIG)}}, "training.learning_rate"),
        ({"hyperparameters": {"n_epochs": None}}, "hyperparameters.n_epochs"),
        ({"lora": {"target_modules": ["qkv_proj"]}}, "lora.target_modules"),
        ({"metadata": {'a"b': "v"}}, 'metadata.a"b'),
        ({"metadata": {"k": "nul\u0000"}}, "metadata.k"),
        ({"suffix": "\ud800"}, "suffix"),
    ],
)
def test_bad_job_values_are_400s_that_store_nothing(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    extra: dict[str, Any],
    param: str | None,
) -> None:
    file_id = uploaded_file_id(client, keyed_project)
    before = snapshot(db_session, quaff_settings)
    payload = {"model": "tiny-llama", "training_file": file_id, **extra}

    body = json.dumps(payload).replace(f'"{"9" * 400}"', BIG)
    headers = {**keyed_project.headers, "Content-Type": "application/json"}
    response = client.post("/v1/fine_tuning/jobs", headers=headers, content=body.encode())
    error = assert_refused(response)
    if param is not None:
        assert error["param"] == param
    elif "learning_rate_multiplier" in json.dumps(extra):
        assert error["param"] == "hyperparameters.learning_rate_multiplier"
    assert snapshot(db_session, quaff_settings) == before


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"model": "tiny-llama", "training_file": "f", "seed": ' + b"1" * 5000 + b"}",
        b'{"model": "tiny-llama", "training_file": "f"',
        b'{"model": NaN}',
        b"\xff\xfe",
    ],
)
def test_hostile_json_bodies_are_400s(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    body: bytes,
) -> None:
    before = snapshot(db_session, quaff_settings)
    headers = {**keyed_project.headers, "Content-Type": "application/json"}
    response = client.post("/v1/fine_tuning/jobs", headers=headers, content=body)
    error = assert_refused(response)
    assert error["code"] == "invalid_json"
    assert error["param"] is None or not error["param"].isdigit()  # never a byte offset
    assert snapshot(db_session, quaff_settings) == before


def test_a_json_body_past_the_limit_is_a_413(
    client: TestClient, keyed_project: KeyedProject, quaff_settings: Settings
) -> None:
    headers = {**keyed_project.headers, "Content-Type": "application/json"}
    body = b'{"model": "' + b"x" * quaff_settings.max_json_bytes + b'"}'
    response = client.post("/v1/fine_tuning/jobs", headers=headers, content=body)
    assert_refused(response, 413)


@pytest.mark.parametrize(
    "lines",
    [
        [b"[" * 100_000],
        [b'{"text": ' + b"1" * 5000 + b"}"],
        [b'{"text": "lone \\udc00 surrogate"}'],
    ],
)
def test_hostile_jsonl_lines_make_an_error_file(
    client: TestClient, keyed_project: KeyedProject, lines: list[bytes]
) -> None:
    data = chat_jsonl(10) + b"\n".join(lines) + b"\n"
    response = upload(client, keyed_project, data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["status_details"].startswith("line 11: ")
    job = client.post(
        "/v1/fine_tuning/jobs",
        headers=keyed_project.headers,
        json={"model": "tiny-llama", "training_file": body["id"]},
    )
    assert_refused(job, 400, "training_file")


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"Content-Type": "multipart/form-data; boundary=B"}, b"\x00garbage\xff" * 100),
        ({"Content-Type": "multipart/form-data; boundary=B"}, b"--B\r\nno headers end"),
        ({"Content-Type": "text/plain"}, b"just text"),
        ({}, b"not json either"),
    ],
)
def test_garbage_upload_bodies_are_400s(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    headers: dict[str, str],
    content: bytes,
) -> None:
    before = snapshot(db_session, quaff_settings)
    response = client.post(
        "/v1/files", headers={**keyed_project.headers, **headers}, content=content
    )
    assert_refused(response)
    assert snapshot(db_session, quaff_settings) == before


def test_a_10000_character_filename_is_normalised_and_bounded(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    name = "e\u0301" + "a" * 10_000 + ".jsonl"
    response = upload(client, keyed_project, chat_jsonl(10), filename=name)
    assert response.status_code == 200, response.text
    shown = response.json()["filename"]
    assert shown.startswith("\u00e9aaa")  # NFC
    assert len(shown) == 255


def test_an_overlong_form_header_is_a_400(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    before = snapshot(db_session, quaff_settings)
    response = upload(client, keyed_project, chat_jsonl(10), filename="a" * 40_000)
    assert_refused(response, 400, "file")
    assert snapshot(db_session, quaff_settings) == before


@pytest.mark.parametrize(
    "query",
    [
        'metadata[a"b]=v',
        "metadata[a]=%00",
        "metadata[a%00]=v",
        "after=file-%00",
        "limit=0",
        "limit=101",
        "limit=" + "9" * 50,
    ],
)
def test_bad_list_queries_are_400s(
    client: TestClient, keyed_project: KeyedProject, query: str
) -> None:
    response = client.get(f"/v1/fine_tuning/jobs?{query}", headers=keyed_project.headers)
    assert_refused(response)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/fine_tuning/jobs/ftjob-%00",
        "/v1/files/file-%00x",
        "/v1/models/ft:%00",
        "/v1/outlier_maps/om-%00",
    ],
)
def test_nul_in_a_path_id_is_a_400(
    client: TestClient, keyed_project: KeyedProject, path: str
) -> None:
    assert_refused(client.get(path, headers=keyed_project.headers))


@pytest.mark.parametrize("step", [str(2**31), str(2**63), "9" * 5000, "-1"])
def test_adapter_step_out_of_range_is_a_400(
    client: TestClient, keyed_project: KeyedProject, step: str
) -> None:
    job = created_job(client, keyed_project)
    response = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/adapter?step={step}", headers=keyed_project.headers
    )
    assert_refused(response, 400, "step")


def test_a_huge_range_start_is_a_416_not_a_crash() -> None:
    assert parse_range("bytes=" + "9" * 5000 + "-", 100) is None
    assert parse_range("bytes=0-" + "9" * 5000, 100) == (0, 99)
    assert parse_range("bytes=-" + "9" * 5000, 100) == (0, 99)
    assert parse_range("bytes=" + "0" * 5000 + "5-9", 100) == (5, 9)


def test_an_overlong_url_is_a_414(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.get("/v1/files/" + "x" * 9000, headers=keyed_project.headers)
    assert_refused(response, 414)


def test_upload_filenames_never_reach_the_disk(tmp_path: Path) -> None:
    assert display_name("..\\..\\evil\x00\x07.jsonl") == "evil.jsonl"
    assert display_name("\ud800") == "?"
    assert display_name("") == "upload.jsonl"
