"""Job polls from memory: a repeated poll skips the store, a change through the API does not."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from api.main import create_app
from store import jobs
from store.db import get_engine
from store.settings import Settings
from tests.helpers import KeyedProject, created_job, make_project


def test_a_repeated_poll_is_answered_without_the_store(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session
) -> None:
    settings = quaff_settings.model_copy(update={"poll_cache_seconds": 60.0})
    queries: list[str] = []
    engine = get_engine(settings)

    def count(*args: object) -> None:
        queries.append(str(args[2]))

    with TestClient(create_app(settings)) as client:
        job = created_job(client, keyed_project)
        url = f"/v1/fine_tuning/jobs/{job['id']}"
        first = client.get(url, headers=keyed_project.headers)
        event.listen(engine, "before_cursor_execute", count)
        try:
            again = client.get(url, headers=keyed_project.headers)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert again.status_code == 200
        assert again.content == first.content
        assert queries == []  # no query at all: from memory
        other = make_project(db_session)  # another project never sees it
        assert client.get(url, headers=other.headers).status_code == 404
        cancelled = client.post(f"{url}/cancel", headers=keyed_project.headers)
        assert cancelled.json()["status"] == "cancelled"
        assert client.get(url, headers=keyed_project.headers).json()["status"] == "cancelled"


def test_a_poll_cache_of_zero_reads_the_store_each_time(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session
) -> None:
    settings = quaff_settings.model_copy(update={"poll_cache_seconds": 0.0})
    with TestClient(create_app(settings)) as client:
        job = created_job(client, keyed_project)
        url = f"/v1/fine_tuning/jobs/{job['id']}"
        assert client.get(url, headers=keyed_project.headers).json()["status"] == "queued"
        row = jobs.get_job(db_session, keyed_project.project.id, job["id"])
        jobs.cancel_job(db_session, row)  # by another process: only the store knows
        assert client.get(url, headers=keyed_project.headers).json()["status"] == "cancelled"


def test_a_poll_after_an_event_stream_sees_the_status_the_stream_sent(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session
) -> None:
    settings = quaff_settings.model_copy(update={"poll_cache_seconds": 60.0})
    with TestClient(create_app(settings)) as client:
        job = created_job(client, keyed_project)
        url = f"/v1/fine_tuning/jobs/{job['id']}"
        assert client.get(url, headers=keyed_project.headers).json()["status"] == "queued"
        row = jobs.get_job(db_session, keyed_project.project.id, job["id"])
        jobs.cancel_job(db_session, row)  # by another process: the kept poll does not know
        assert client.get(url, headers=keyed_project.headers).json()["status"] == "queued"
        streamed = client.get(f"{url}/events?stream=true", headers=keyed_project.headers)
        assert '"status":"cancelled"' in streamed.text.replace(" ", "")
        assert client.get(url, headers=keyed_project.headers).json()["status"] == "cancelled"
