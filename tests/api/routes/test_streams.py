"""Event streams over a real server: bounded per key (429 + Retry-After beyond), released when
the client goes away, woken by the event hub, ended by the terminal event."""

from __future__ import annotations

import json
import threading

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.main import create_app
from store import auth, jobs
from store.db import session_factory
from store.settings import Settings
from tests.helpers import KeyedProject, created_job, make_project
from tests.processes import serve_in_thread, wait_for


def test_streams_are_bounded_per_key_and_released_on_disconnect(
    quaff_settings: Settings, keyed_project: KeyedProject, db_session: Session
) -> None:
    settings = quaff_settings.model_copy(update={"max_streams_per_key": 1})
    app = create_app(settings)
    with TestClient(app) as client:
        job = created_job(client, keyed_project)
    url = f"/fine_tuning/jobs/{job['id']}/events?stream=true"
    other = make_project(db_session)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        with http.stream("GET", url, headers=keyed_project.headers) as first:
            assert first.status_code == 200
            lines = first.iter_lines()  # one iterator: dropping it would close the connection
            assert next(lines).startswith("data: ")
            second = http.get(url, headers=keyed_project.headers)
            assert second.status_code == 429
            assert second.headers["retry-after"] == "1"
            assert second.json()["error"]["code"] == "too_many_streams"
            assert (
                http.get(url.replace(job["id"], "ftjob-x"), headers=other.headers).status_code
                == 404
            )
        wait_for("the closed stream to be released", lambda: not app.state.streams.open, 30)
        with http.stream("GET", url, headers=keyed_project.headers) as again:
            assert again.status_code == 200


def test_a_stream_is_woken_by_new_events_and_ends_with_the_job(
    quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"event_poll_seconds": 0.05})
    app = create_app(settings)
    with TestClient(app) as client:
        job = created_job(client, keyed_project)
    received: list[str] = []
    started = threading.Event()

    def cancel_when_started() -> None:
        started.wait(30)
        with session_factory(settings)() as session:
            row = jobs.get_job(session, keyed_project.project.id, job["id"])
            jobs.cancel_job(session, row)

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    url = f"/fine_tuning/jobs/{job['id']}/events?stream=true"
    with (
        serve_in_thread(app) as base,
        httpx.Client(base_url=base, timeout=30) as http,
        http.stream("GET", url, headers=keyed_project.headers) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line[6:])["message"])
                if len(received) == 3:
                    started.set()
    canceller.join()
    assert received[-1] == "Job cancelled by the user"
    assert not app.state.streams.open


def test_a_stream_of_a_revoked_key_ends_within_the_key_cache_time(
    quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"auth_cache_seconds": 0.2})
    app = create_app(settings)
    with TestClient(app) as client:
        job = created_job(client, keyed_project)
    url = f"/fine_tuning/jobs/{job['id']}/events?stream=true"
    with (
        serve_in_thread(app) as base,
        httpx.Client(base_url=base, timeout=10) as http,
        http.stream("GET", url, headers=keyed_project.headers) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        with session_factory(settings)() as session:
            auth.revoke_key(session, keyed_project.key[:16])
        rest = [line for line in lines if line.startswith("data: ")]
    error = json.loads(rest[-1][6:])["error"]
    assert error["code"] == "invalid_api_key"
    assert not app.state.streams.open
