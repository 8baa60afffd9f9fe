"""The request path cannot starve: one session (one pooled connection) per request shared by
auth and handler, a key cache that spares the database, bounded waits that end in 503 with
Retry-After, and a database outage that is a 503, not a 500."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session

from api.auth import KeyCache, Principal
from api.gate import Gate
from api.main import create_app
from store.auth import revoke_key
from store.db import get_engine
from store.settings import Settings
from tests.helpers import KeyedProject, created_job
from tests.processes import serve_in_thread


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def statements(quaff_settings: Settings) -> Iterator[list[str]]:
    """SQL statements run on the test engine while the test runs."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    engine = get_engine(quaff_settings)
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_cached_key_costs_no_database_round_trip(
    client: TestClient, keyed_project: KeyedProject, statements: list[str]
) -> None:
    job = created_job(client, keyed_project)
    statements.clear()
    response = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=keyed_project.headers)
    assert response.status_code == 200
    assert len(statements) == 1  # the job itself; the key came from the cache
    assert "fine_tuning_jobs" in statements[0]


def test_a_request_never_holds_two_connections(
    app: FastAPI, keyed_project: KeyedProject, quaff_settings: Settings
) -> None:
    """Auth on a key-cache miss and the handler each use a short session, one after the other."""
    held: list[int] = [0]
    most: list[int] = [0]
    engine = get_engine(quaff_settings)

    def checkout(*_args: Any) -> None:
        held[0] += 1
        most[0] = max(most[0], held[0])

    def checkin(*_args: Any) -> None:
        held[0] -= 1

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        with TestClient(app) as fresh:  # an empty key cache: auth reads the store
            response = fresh.get("/v1/fine_tuning/jobs", headers=keyed_project.headers)
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
    assert response.status_code == 200
    assert (most[0], held[0]) == (1, 0)


def test_a_revoked_key_stops_working_when_its_cache_entry_expires(
    app: FastAPI, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    clock = FakeClock()
    app.state.key_cache = KeyCache(quaff_settings.auth_cache_seconds, clock=clock)
    with TestClient(app) as client:
        assert client.get("/v1/files", headers=keyed_project.headers).status_code == 200
        revoke_key(db_session, keyed_project.key[:16])
        assert client.get("/v1/files", headers=keyed_project.headers).status_code == 200
        clock.now += quaff_settings.auth_cache_seconds
        response = client.get("/v1/files", headers=keyed_project.headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert quaff_settings.auth_cache_seconds <= 5  # "within seconds"


def test_invalidate_forgets_a_key_at_once() -> None:
    cache = KeyCache(60, clock=FakeClock())
    cache.put(Principal(id="proj-1", name="p", key_hash="h"))
    assert cache.get("h") is not None
    cache.invalidate("h")
    assert cache.get("h") is None


def test_no_free_slot_in_time_is_a_503_with_retry_after(
    app: FastAPI, keyed_project: KeyedProject
) -> None:
    gate = Gate(1, wait_seconds=0.05, max_waiting=10)
    app.state.gate = gate
    with TestClient(app) as client:
        assert client.portal is not None  # set while the client is entered
        client.portal.call(gate.acquire)  # someone holds the only slot
        response = client.get("/v1/files", headers=keyed_project.headers)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"] == {
        "message": "The server is handling too many requests right now; please retry after a "
        "moment.",
        "type": "server_error",
        "param": None,
        "code": "server_busy",
    }


def test_a_database_that_is_down_is_a_503_with_retry_after(
    tmp_path: Any, keyed_project: KeyedProject
) -> None:
    down = Settings(
        data_dir=tmp_path / "down", database_url="postgresql+psycopg://postgres@127.0.0.1:1/x"
    )
    with TestClient(create_app(down)) as client:
        for method, path in [("GET", "/v1/files"), ("GET", "/v1/fine_tuning/jobs/ftjob-1")]:
            response = client.request(method, path, headers=keyed_project.headers)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "database_unavailable")
        assert client.get("/readyz").status_code == 503


async def _poll(base_url: str, path: str, headers: dict[str, str], n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        return list(await asyncio.gather(*(http.get(path, headers=headers) for _ in range(n))))


def test_many_concurrent_polls_on_a_tiny_pool_all_finish(
    quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    """Issue 13's starvation: 0 of 200 polls answered. With 2 connections, 120 at once."""
    small = quaff_settings.model_copy(update={"db_pool_size": 2, "request_wait_seconds": 10.0})
    app = create_app(small)
    with TestClient(app) as client:
        job = created_job(client, keyed_project)
    with serve_in_thread(app) as base_url:
        root = base_url.removesuffix("/v1")
        path = f"/v1/fine_tuning/jobs/{job['id']}"
        responses = asyncio.run(_poll(root, path, keyed_project.headers, 120))
    statuses = {r.status_code for r in responses}
    assert statuses <= {200, 503}
    assert 200 in statuses
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(quaff_settings: Settings) -> None:
    if not quaff_settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    with get_engine(quaff_settings).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    assert timeout == quaff_settings.db_busy_timeout_ms
