"""Checkpoints list and the adapter download with HTTP Range (blobs made by store calls)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.checkpoints import save_checkpoint
from store.models import Job
from store.settings import Settings
from tests.helpers import KeyedProject, created_job, make_project

ADAPTER = bytes(range(256)) * 4  # 1024 bytes


def _trained(
    client: TestClient, keyed: KeyedProject, session: Session, settings: Settings
) -> dict[str, Any]:
    """A job driven to success by store calls (as the worker does), with two checkpoints."""
    job_json = created_job(client, keyed, suffix="ck")
    blobs = BlobStore(settings.blob_dir)
    job = jobs.claim_job(session, job_json["id"], "test-worker")
    assert job is not None
    for step in (5, 10):
        save_checkpoint(
            session,
            blobs,
            job,
            step=step,
            metrics={"train_loss": 2.0 / step},
            source=b"ckpt%d" % step,
        )
    save_adapter(session, blobs, job, ADAPTER)
    jobs.succeed_job(session, job)
    return job_json


def test_list_checkpoints_newest_first(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    job = _trained(client, keyed_project, db_session, quaff_settings)
    body = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/checkpoints", headers=keyed_project.headers
    ).json()
    assert [c["step_number"] for c in body["data"]] == [10, 5]
    newest = body["data"][0]
    assert newest["object"] == "fine_tuning.job.checkpoint"
    assert newest["fine_tuning_job_id"] == job["id"]
    assert newest["metrics"] == {"step": 10, "train_loss": 0.2}
    assert (
        newest["fine_tuned_model_checkpoint"]
        == f"ft:tiny-llama:{keyed_project.project.name}:ck:{job['id'][-8:]}:ckpt-step-10"
    )
    assert (body["first_id"], body["last_id"]) == (body["data"][0]["id"], body["data"][1]["id"])


def test_download_adapter_whole(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    job = _trained(client, keyed_project, db_session, quaff_settings)
    response = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/adapter", headers=keyed_project.headers
    )
    assert response.status_code == 200
    assert response.content == ADAPTER
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "application/gzip"
    at_step = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/adapter?step=5", headers=keyed_project.headers
    )
    assert at_step.content == b"ckpt5"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=1000-5000", 1000, 1023),
    ],
)
def test_download_adapter_range(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    header: str,
    start: int,
    end: int,
) -> None:
    job = _trained(client, keyed_project, db_session, quaff_settings)
    response = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/adapter",
        headers={**keyed_project.headers, "Range": header},
    )
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/1024"
    assert response.content == ADAPTER[start : end + 1]


def test_download_adapter_unsatisfiable_range(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    job = _trained(client, keyed_project, db_session, quaff_settings)
    response = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/adapter",
        headers={**keyed_project.headers, "Range": "bytes=2000-"},
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */1024"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


def test_download_adapter_not_found_before_training(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    job = created_job(client, keyed_project)
    response = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/adapter", headers=keyed_project.headers
    )
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"No adapter for job found with id '{job['id']}'."
    other = make_project(db_session)
    hidden = client.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints", headers=other.headers)
    assert hidden.status_code == 404
    assert db_session.get(Job, job["id"]) is not None
