"""Real processes for end-to-end tests: the API (uvicorn) and Celery workers, on two back-ends.

`embedded`: SQLite + kombu's SQLAlchemy broker in a private data directory (the defaults).
`redis-postgres`: PostgreSQL (a throw-away schema) + Redis (a dedicated db number, flushed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from store import migrate
from store.auth import create_key
from store.db import dispose_engine, session_factory
from store.settings import Settings
from tests.servers import free_port

REDIS_URL = os.environ.get("QUAFF_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
ROOT = Path(__file__).resolve().parents[2]
# Short leases so a killed worker's job is taken over within seconds, not minutes.
FAST_LEASES = {
    "QUAFF_WORKER_HEARTBEAT_SECONDS": "0.5",
    "QUAFF_WORKER_LEASE_SECONDS": "4",
    "QUAFF_BROKER_VISIBILITY_TIMEOUT": "30",
    "QUAFF_EVENT_POLL_SECONDS": "0.2",
    "QUAFF_DEVICE": "cpu",
}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll `check` until it returns something truthy; fail the test naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def _redis_reachable(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {url} is not reachable: {exc}"
    return None


@dataclass
class Service:
    """An API process plus worker processes sharing one environment (so the same settings)."""

    name: str
    settings: Settings
    env: dict[str, str]
    logs: Path
    api_key: str = ""
    base_url: str = ""
    api: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.logs / log_name).open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *argv],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_api(self) -> None:
        """`quaff api` on a free port; returns once /healthz answers."""
        port = free_port()
        self.api = self._spawn(["api", "--port", str(port), "--no-migrate"], "api.log")
        self.base_url = f"http://127.0.0.1:{port}/v1"

        def healthy() -> bool:
            if self.api is not None and self.api.poll() is not None:
                pytest.fail(f"API exited: {(self.logs / 'api.log').read_text()[-2000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the API to answer /healthz", healthy, timeout=60)

    def start_worker(self) -> subprocess.Popen[bytes]:
        """A new `quaff worker` process (prefork, one pool process)."""
        process = self._spawn(["worker"], f"worker-{len(self.workers)}.log")
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool process (its whole process group), no clean-up."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """Stop every process this service started."""
        for process in [*self.workers, *([self.api] if self.api else [])]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in [*self.workers, *([self.api] if self.api else [])]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)

    def sdk(self) -> OpenAI:
        """The official OpenAI client pointed at this server."""
        return OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=2, timeout=60)

    def log_tail(self) -> str:
        """The last lines of every log, for failure messages."""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logs.glob("*.log"))
        )


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(FAST_LEASES)
    env["QUAFF_DATA_DIR"] = str(settings.data_dir)
    env["QUAFF_DATABASE_URL"] = settings.database_url
    env["QUAFF_BROKER_URL"] = settings.broker_url
    env["PYTHONPATH"] = str(ROOT)
    return env


BACKENDS = [
    "embedded",
    pytest.param("redis-postgres", marks=[pytest.mark.redis, pytest.mark.postgres]),
]


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The API and one worker on the chosen back-end, with a project key; stopped afterwards."""
    root = tmp_path_factory.mktemp(f"svc-{request.param}")
    if request.param == "embedded":
        settings = Settings(data_dir=root / "data")
    else:
        reason = _redis_reachable(REDIS_URL)
        if reason:
            pytest.skip(reason)
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()
        database_url = request.getfixturevalue("pg_schema_url")
        settings = Settings(data_dir=root / "data", database_url=database_url, broker_url=REDIS_URL)
    migrate.upgrade(settings)
    with session_factory(settings)() as session:
        _row, key = create_key(session, f"e2e-{uuid.uuid4().hex[:8]}")
    svc = Service(name=request.param, settings=settings, env=_env(settings), logs=root, api_key=key)
    try:
        svc.start_api()
        svc.start_worker()
        yield svc
    finally:
        svc.stop()
        dispose_engine(settings)
        if request.param != "embedded":
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
