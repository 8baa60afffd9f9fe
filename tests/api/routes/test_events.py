"""/v1/fine_tuning/jobs/{id}/events: newest first with a cursor, and the SSE stream."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.db import session_factory
from store.events import add_event
from store.models import Job
from store.settings import Settings
from tests.helpers import KeyedProject, created_job


def test_list_events_newest_first_with_cursor(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    job = created_job(client, keyed_project)
    url = f"/v1/fine_tuning/jobs/{job['id']}/events"
    everything = client.get(url, headers=keyed_project.headers).json()
    messages = [e["message"] for e in everything["data"]]
    assert messages == [
        "Files validated, moving job to queued state",
        f"Validating training file: {job['training_file']}",
        f"Created fine-tuning job: {job['id']}",
    ]
    first = everything["data"][0]
    assert set(first) == {"id", "object", "created_at", "level", "message", "type", "kind", "data"}
    assert (first["object"], first["level"], first["type"]) == (
        "fine_tuning.job.event",
        "info",
        "message",
    )
    assert [e["kind"] for e in everything["data"]] == ["status", "files_validating", "job_created"]
    assert first["data"] == {"status": "queued", "previous": "validating_files"}
    page = client.get(f"{url}?limit=1&after={first['id']}", headers=keyed_project.headers).json()
    assert [e["message"] for e in page["data"]] == [messages[1]]
    assert page["has_more"] is True


@pytest.mark.parametrize("limit", ["0", "1001", "x"])
def test_list_events_bad_limit_is_a_400_naming_limit(
    client: TestClient, keyed_project: KeyedProject, limit: str
) -> None:
    job = created_job(client, keyed_project)
    response = client.get(
        f"/v1/fine_tuning/jobs/{job['id']}/events?limit={limit}", headers=keyed_project.headers
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["type"]) == ("limit", "invalid_request_error")


def _drive_to_success(settings: Settings, job_id: str, started: threading.Event) -> None:
    """Simulate the worker with the store's functions while the client is streaming."""
    started.wait(timeout=30)
    with session_factory(settings)() as session:
        job = jobs.claim_job(session, job_id, "test-worker")
        if job is None:
            raise RuntimeError(f"job {job_id} could not be claimed")
        add_event(
            session,
            job_id,
            "Step 1/1: training loss=1.25",
            type="metrics",
            data={"step": 1, "total_steps": 1, "train_loss": 1.25},
        )
        session.commit()
        save_adapter(session, BlobStore(settings.blob_dir), job, b"adapter")
        jobs.succeed_job(session, job)


def test_stream_events_until_the_job_ends(
    client: TestClient,
    keyed_project: KeyedProject,
    quaff_settings: Settings,
    db_session: Session,
) -> None:
    job = created_job(client, keyed_project)
    started = threading.Event()
    worker = threading.Thread(target=_drive_to_success, args=(quaff_settings, job["id"], started))
    worker.start()
    received: list[dict[str, object]] = []
    with client.stream(
        "GET", f"/v1/fine_tuning/jobs/{job['id']}/events?stream=true", headers=keyed_project.headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line[len("data: ") :]))
                started.set()
    worker.join()
    messages = [e["message"] for e in received]
    assert messages[:3] == [
        f"Created fine-tuning job: {job['id']}",
        f"Validating training file: {job['training_file']}",
        "Files validated, moving job to queued state",
    ]
    assert messages[-3:] == [
        "Step 1/1: training loss=1.25",
        "New fine-tuned model created",
        "The job has successfully completed",
    ]
    metrics = received[-3]
    assert (metrics["type"], metrics["data"]) == (
        "metrics",
        {"step": 1, "total_steps": 1, "train_loss": 1.25},
    )
    stored = db_session.get(Job, job["id"])
    assert stored is not None
    assert stored.status == "succeeded"


def test_stream_of_a_finished_job_sends_the_rest_and_ends(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    job = created_job(client, keyed_project)
    url = f"/v1/fine_tuning/jobs/{job['id']}"
    client.post(f"{url}/cancel", headers=keyed_project.headers)
    newest = client.get(f"{url}/events?limit=2", headers=keyed_project.headers).json()["data"]
    response = client.get(
        f"{url}/events?stream=true&after={newest[1]['id']}", headers=keyed_project.headers
    )
    assert response.status_code == 200
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert [e["message"] for e in events] == ["Job cancelled by the user"]
