"""The service under load: the API and a worker as real processes on loopback, their database
(SQLite, or a fresh PostgreSQL schema with a Redis database of the bench's own), keys and a
long training job to watch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text

from store import migrate
from store.auth import create_key
from store.db import dispose_all, session_factory
from store.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "QUAFF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = "redis://127.0.0.1:6379/14"  # not the tests' database


def settings_for(backend: str, data_dir: Path) -> Settings:
    """Embedded defaults, or a fresh PostgreSQL schema and a Redis database of the bench's own."""
    if backend == "sqlite":
        return Settings(data_dir=data_dir)
    redis.Redis.from_url(REDIS_URL).flushdb()
    schema = f"quaff_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    return Settings(data_dir=data_dir, database_url=url, broker_url=REDIS_URL)


def drop_schema(settings: Settings) -> None:
    """Drop the bench's PostgreSQL schema (nothing for SQLite)."""
    if "search_path%3D" not in settings.database_url:
        return
    schema = settings.database_url.rsplit("%3D", 1)[1]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def make_keys(settings: Settings, n_keys: int) -> list[str]:
    """Migrate, then `n_keys` keys of one project."""
    migrate.upgrade(settings)
    name = f"load-{uuid.uuid4().hex[:6]}"
    with session_factory(settings)() as session:
        keys = [create_key(session, name)[1] for _ in range(n_keys)]
    dispose_all()
    return keys


def spawn(argv: list[str], env: dict[str, str], log: Path, nice: int = 0) -> Any:
    """`quaff <argv>` in its own process group, logging to `log`, at `nice`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=env, stdout=log.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PGRP, process.pid, nice)
    return process


def stop(process: Any) -> None:
    """SIGTERM the process group, SIGKILL it after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(what: str, check: Any, timeout: float) -> Any:
    """`check()`'s first truthy value (connection errors count as not yet), within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, httpx.TransportError):  # not up yet
            value = None
        if value:
            return value
        time.sleep(0.3)
    raise RuntimeError(f"timed out waiting for {what}")


def training(http: Any, job_id: str) -> bool:
    """Whether the job has trained a step; RuntimeError once it has ended."""
    job = http.get(f"/fine_tuning/jobs/{job_id}").json()
    if job["status"] in ("failed", "cancelled", "succeeded"):
        raise RuntimeError(f"the training job ended {job['status']}: {job['error']}")
    return bool(job["progress"]["step"] > 0)


def training_job(http: Any, examples: int) -> str:
    """Upload `examples` chat rows and create a long tiny-llama job; returns its id."""
    turns = [(f"{i}+{i}?", str(2 * i)) for i in range(examples)]
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in turns]  # fmt: skip
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    file_id = http.post("/files", files={"file": ("t.jsonl", data)},
                        data={"purpose": "fine-tune"}).json()["id"]  # fmt: skip
    body = {"model": "tiny-llama", "training_file": file_id,
            "hyperparameters": {"n_epochs": 50, "batch_size": 1},
            "lora": {"r": 2}, "training": {"max_seq_length": 64, "n_checkpoints": 1}}  # fmt: skip
    job: dict[str, Any] = http.post("/fine_tuning/jobs", json=body).json()
    return str(job["id"])
