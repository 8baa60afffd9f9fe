"""Load on the request path: status polls, event lists and SSE streams from many loopback clients
while a worker trains, on SQLite (embedded) or PostgreSQL + Redis.

    python -m bench.load --backend sqlite --clients 50,200,1000 --seconds 20
    python -m bench.load --backend postgres --clients 50,200,1000 --seconds 20

The API (`quaff api`) and one worker (`quaff worker`, niced as `quaff serve` runs it) are real
processes on 127.0.0.1. Each client polls once per `--interval` seconds (a random phase) with its
own keep-alive connection; an SSE client opens the training job's stream, times its first event,
holds it `--hold` seconds and reconnects. Bounded: `--seconds` per phase, a 30 s client timeout.
Prints p50/p95/p99 (ms) and counts: 200, 503 (busy, with Retry-After), 429 (stream limit),
other 4xx/5xx, timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import command_line, environment, write_json

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0
CLIENTS_PER_KEY = 10
SCENARIOS = ("poll", "events", "sse")
PG_URL = os.environ.get(
    "QUAFF_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = "redis://127.0.0.1:6379/14"  # not the tests' database


@dataclass
class Tally:
    """Latencies (seconds) of answered requests and a count per outcome."""

    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def row(self) -> dict[str, Any]:
        """p50/p95/p99 in ms and the outcome counts."""
        ms = sorted(x * 1000 for x in self.latencies)

        def pct(p: float) -> float | None:
            return round(ms[min(len(ms) - 1, int(p * len(ms)))], 1) if ms else None

        return {"n": len(ms), "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99),
                **dict(self.outcomes)}  # fmt: skip


def _head(path: str, key: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            "Connection: keep-alive\r\n\r\n").encode()  # fmt: skip


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers; the body (Content-Length) is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    return status, headers


def _classify(status: int, headers: dict[str, str]) -> str:
    if status == 503:
        return "503" if "retry-after" in headers else "503_no_retry_after"
    return str(status)


async def poll_client(
    addr: tuple[str, int], path: str, key: str, interval: float, until: float, tally: Tally
) -> None:
    """One polling client on one connection: a request every `interval` seconds."""
    await asyncio.sleep(random.uniform(0, interval))
    reader, writer = await asyncio.open_connection(*addr)
    try:
        while time.monotonic() < until:
            began = time.monotonic()
            try:
                writer.write(_head(path, key))
                status, headers = await asyncio.wait_for(_read_response(reader), TIMEOUT)
            except TimeoutError:
                tally.outcomes["timeout"] += 1
                return
            except (OSError, asyncio.IncompleteReadError):
                tally.outcomes["connection_error"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(*addr)
                continue
            tally.latencies.append(time.monotonic() - began)
            tally.outcomes[_classify(status, headers)] += 1
            if headers.get("connection") == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(*addr)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
    finally:
        writer.close()


async def sse_client(
    addr: tuple[str, int], path: str, key: str, hold: float, until: float, tally: Tally
) -> None:
    """Open a stream, time its first event, hold it, close, repeat."""
    await asyncio.sleep(random.uniform(0, hold))
    while time.monotonic() < until:
        began = time.monotonic()
        reader, writer = await asyncio.open_connection(*addr)
        try:
            writer.write(_head(path, key))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            status = int(head.split()[1])
            if status != 200:
                tally.latencies.append(time.monotonic() - began)
                tally.outcomes["503" if status == 503 else str(status)] += 1
                await asyncio.sleep(1.0)
                continue
            await asyncio.wait_for(reader.readuntil(b"data: "), TIMEOUT)
            tally.latencies.append(time.monotonic() - began)
            tally.outcomes["200"] += 1
            with contextlib.suppress(TimeoutError, OSError, asyncio.IncompleteReadError):
                await asyncio.wait_for(reader.read(-1), hold)
        except TimeoutError:
            tally.outcomes["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError):
            tally.outcomes["connection_error"] += 1
        finally:
            writer.close()


async def run_phase(
    scenario: str, clients: int, keys: list[str], job_id: str, args: argparse.Namespace
) -> Tally:
    """`clients` clients of one scenario for `args.seconds`."""
    tally = Tally()
    until = time.monotonic() + args.seconds
    addr = ("127.0.0.1", args.port)
    base = f"/v1/fine_tuning/jobs/{job_id}"
    tasks = []
    for i in range(clients):
        key = keys[i // CLIENTS_PER_KEY]
        if scenario == "sse":
            coro = sse_client(addr, f"{base}/events?stream=true", key, args.hold, until, tally)
        else:
            path = base if scenario == "poll" else f"{base}/events?limit=20"
            coro = poll_client(addr, path, key, args.interval, until, tally)
        tasks.append(asyncio.create_task(coro))
    await asyncio.wait(tasks, timeout=args.seconds + TIMEOUT + args.hold + 5)
    for task in tasks:
        task.cancel()
    return tally


def _settings(backend: str, data_dir: Path) -> Any:
    """Embedded defaults, or a fresh PostgreSQL schema and a Redis database of the bench's own."""
    from sqlalchemy import create_engine, text

    from store.settings import Settings

    if backend == "sqlite":
        return Settings(data_dir=data_dir)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    schema = f"quaff_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    return Settings(data_dir=data_dir, database_url=url, broker_url=REDIS_URL)


def _drop_schema(settings: Any) -> None:
    from sqlalchemy import create_engine, text

    if "search_path%3D" not in settings.database_url:
        return
    schema = settings.database_url.rsplit("%3D", 1)[1]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def _keys(settings: Any, n_keys: int) -> list[str]:
    """Migrate, then `n_keys` keys of one project."""
    from store import migrate
    from store.auth import create_key
    from store.db import dispose_all, session_factory

    migrate.upgrade(settings)
    name = f"load-{uuid.uuid4().hex[:6]}"
    with session_factory(settings)() as session:
        keys = [create_key(session, name)[1] for _ in range(n_keys)]
    dispose_all()
    return keys


def _spawn(argv: list[str], env: dict[str, str], log: Path, nice: int = 0) -> Any:
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=env, stdout=log.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PGRP, process.pid, nice)
    return process


def _stop(process: Any) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait(what: str, check: Any, timeout: float) -> Any:
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


def _training(http: Any, job_id: str) -> bool:
    """Whether the job has trained a step; RuntimeError once it has ended."""
    job = http.get(f"/fine_tuning/jobs/{job_id}").json()
    if job["status"] in ("failed", "cancelled", "succeeded"):
        raise RuntimeError(f"the training job ended {job['status']}: {job['error']}")
    return bool(job["progress"]["step"] > 0)


def _training_job(http: Any, examples: int) -> str:
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the service, run every phase, stop everything; returns the results."""
    from tests.processes import free_port

    levels = [int(n) for n in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="quaff-load-") as tmp:
        settings = _settings(args.backend, Path(tmp) / "data")
        keys = _keys(settings, max(levels) // CLIENTS_PER_KEY + 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
        env.update(QUAFF_DATA_DIR=str(settings.data_dir), QUAFF_DATABASE_URL=settings.database_url,
                   QUAFF_BROKER_URL=settings.broker_url, QUAFF_DEVICE="cpu",
                   PYTHONPATH=str(ROOT))  # fmt: skip
        args.port = free_port()
        api = _spawn(["api", "--port", str(args.port), "--no-migrate"], env, Path(tmp) / "api.log")
        worker = None
        base = f"http://127.0.0.1:{args.port}/v1"
        headers = {"Authorization": f"Bearer {keys[0]}"}
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
                _wait("the API", lambda: http.get(f"{base[:-3]}/healthz").status_code == 200, 60)
                job_id = _training_job(http, args.examples)
                if args.worker:
                    log = Path(tmp) / "worker.log"
                    worker = _spawn(["worker"], env, log, nice=settings.worker_nice)
                    _wait("training", lambda: _training(http, job_id), 180)
                results = []
                for clients in levels:
                    for scenario in args.scenarios.split(","):
                        tally = asyncio.run(run_phase(scenario, clients, keys, job_id, args))
                        row = {"scenario": scenario, "clients": clients, **tally.row()}
                        results.append(row)
                        print(_line(row), flush=True)
                step = http.get(f"/fine_tuning/jobs/{job_id}").json()["progress"]["step"]
                http.post(f"/fine_tuning/jobs/{job_id}/cancel")
        except Exception:
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
            raise
        finally:
            for process in (worker, api):
                if process is not None:
                    _stop(process)
            if args.backend != "sqlite":
                _drop_schema(settings)
    return {"backend": args.backend, "worker": args.worker, "interval": args.interval,
            "seconds": args.seconds, "trained_steps": step, "results": results}  # fmt: skip


COLUMNS = ("scenario", "clients", "n", "p50", "p95", "p99", "200", "503", "429", "timeout")


def _line(row: dict[str, Any]) -> str:
    """One markdown table row; other outcomes (errors) are appended."""
    cells = [str(row.get(c, 0) if c not in ("p50", "p95", "p99") else row.get(c)) for c in COLUMNS]
    other = {k: v for k, v in row.items() if k not in COLUMNS}
    return "| " + " | ".join(cells) + " | " + (json.dumps(other) if other else "") + " |"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--clients", default="50,200,1000", help="concurrent clients per phase")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds an SSE stream stays open")
    parser.add_argument("--examples", type=int, default=400, help="training examples")
    parser.add_argument("--no-worker", dest="worker", action="store_false")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    args = parse_args(argv)
    print("| " + " | ".join(COLUMNS) + " | other |\n" + "|---" * (len(COLUMNS) + 1) + "|")
    found = run(args)
    found["environment"] = environment(threads=os.cpu_count() or 1)
    found["command"] = command_line("bench.load", argv)
    if args.json is not None:
        write_json(args.json, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
