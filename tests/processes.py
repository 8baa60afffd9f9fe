"""Real servers and processes for tests: uvicorn in a thread, or `quaff api` + `quaff worker`
(+ `quaff infer`) processes sharing one environment (tests/worker and tests/infer build them)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from openai import OpenAI

from store.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
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
    infers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(
        self, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / log_name).open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *argv],
            cwd=ROOT,
            env={**self.env, **(env or {})},
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

    def start_worker(self, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """A new `quaff worker` process (prefork, one pool process), `env` added to the
        service's."""
        process = self._spawn(["worker"], f"worker-{len(self.workers)}.log", env)
        self.workers.append(process)
        return process

    def start_infer(self) -> subprocess.Popen[bytes]:
        """A new `quaff infer` process (it registers itself in the node table)."""
        process = self._spawn(["infer"], f"infer-{len(self.infers)}.log")
        self.infers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool process (its whole process group), no clean-up."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        """Stop every process this service started."""
        processes = [*self.workers, *self.infers, *([self.api] if self.api else [])]
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
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


def service_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(FAST_LEASES)
    env["QUAFF_DATA_DIR"] = str(settings.data_dir)
    env["QUAFF_DATABASE_URL"] = settings.database_url
    env["QUAFF_BROKER_URL"] = settings.broker_url
    env["PYTHONPATH"] = str(ROOT)
    return env


def children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux /proc: each of its threads' children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port; yields the `/v1` base URL, then stops."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
