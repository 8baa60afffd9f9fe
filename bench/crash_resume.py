"""Crash resume under `quaff serve`: kill -9 the worker of a training job, time its come-back.

    .venv/bin/python -m bench.crash_resume --backend sqlite --json bench/results/crash_sqlite.json

`quaff serve` runs the API, a worker and an inference node with the default lease (120 s) and
heartbeat (10 s). A long tiny-llama job trains until it has a checkpoint and a few steps past it;
then the worker's whole process group gets SIGKILL (no hand-back). serve starts a new worker, which
finds the job's lease held by a process of this host that is gone and takes it over. Measured from
the kill: until the job's events say it was taken over, and until it trains a step again. Then
the job is cancelled and its metrics events are checked for a step counted twice.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.load_service import (
    ROOT,
    drop_schema,
    make_keys,
    settings_for,
    spawn,
    stop,
    training_job,
    wait_for,
)
from quaff_core.quant.capabilities import device_class
from tests.processes import children, free_port


def worker_of(serve_pid: int) -> int | None:
    """The pid of serve's worker (its child running `cli.main worker`), if it runs."""
    for pid in children(serve_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in argv:
            return pid
    return None


def messages(http: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """The job's events, oldest first."""
    events = http.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 1000}).json()
    return list(reversed(events["data"]))


def progress_step(http: httpx.Client, job_id: str) -> int:
    """The job's recorded step (its progress), fresh from the store's point of view."""
    return int(http.get(f"/fine_tuning/jobs/{job_id}").json()["progress"]["step"] or 0)


def one_crash(http: httpx.Client, serve_pid: int, job_id: str, timeout: float) -> dict[str, Any]:
    """Kill the worker once the job has a checkpoint; seconds until taken over and training."""
    checkpoint = wait_for(
        "a checkpoint",
        lambda: http.get(f"/fine_tuning/jobs/{job_id}/checkpoints").json()["data"],
        timeout,
    )[0]["step_number"]
    wait_for("two steps past it", lambda: progress_step(http, job_id) >= checkpoint + 2, timeout)
    worker = worker_of(serve_pid)
    if worker is None:
        raise RuntimeError("serve runs no worker")
    at_kill = progress_step(http, job_id)
    killed = time.monotonic()
    os.killpg(worker, signal.SIGKILL)
    wait_for(
        "the take-over",
        lambda: any("took over" in e["message"] for e in messages(http, job_id)),
        timeout,
    )
    taken = time.monotonic() - killed
    wait_for(
        "a step trained after the take-over",
        lambda: _trained_since_resume(messages(http, job_id), checkpoint),
        timeout,
    )
    return {
        "step_at_kill": at_kill,
        "checkpoint_step": checkpoint,
        "taken_over_s": round(taken, 1),
        "training_again_s": round(time.monotonic() - killed, 1),
    }


def _trained_since_resume(events: list[dict[str, Any]], checkpoint: int) -> bool:
    """Whether a metrics event past `checkpoint` follows the first 'Resuming from' event."""
    starts = [i for i, e in enumerate(events) if e["message"].startswith("Resuming from")]
    return bool(starts) and any(
        e["type"] == "metrics" and e["data"]["step"] > checkpoint for e in events[starts[0] :]
    )


def run(backend: str, timeout: float) -> dict[str, Any]:
    """One crash of a serve on `backend` (sqlite, postgres); its timings and step counts."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(backend, Path(tmp) / "data")
        key = make_keys(settings, 1)[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
        env.update(
            QUAFF_DATA_DIR=str(settings.data_dir),
            QUAFF_DATABASE_URL=settings.database_url,
            QUAFF_BROKER_URL=settings.broker_url,
            QUAFF_DEVICE="cpu",
            QUAFF_SAFETY_CHECKPOINT_SECONDS="10",
            PYTHONPATH=str(ROOT),
        )
        port = free_port()
        serve = spawn(["serve", "--port", str(port)], env, Path(tmp) / "serve.log")
        headers = {"Authorization": f"Bearer {key}"}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers=headers) as http:
                wait_for("the API", lambda: http.get("/models").status_code == 200, 120)
                job_id = training_job(http, 40)
                result = one_crash(http, serve.pid, job_id, timeout)
                http.post(f"/fine_tuning/jobs/{job_id}/cancel")
                events = messages(http, job_id)
                steps = [e["data"]["step"] for e in events if e["type"] == "metrics"]
                result["metrics_steps_counted_twice"] = len(steps) - len(set(steps))
                texts = [e["message"] for e in events]
                result["attempts"] = sum(t.startswith("Fine-tuning job started") for t in texts)
        finally:
            stop(serve)
            drop_schema(settings)
    return {"backend": backend, **result}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Print one line per backend; write the records to --json."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    results = []
    print(f"host: {device_class('cpu')}")
    for backend in args.backend or ["sqlite"]:
        results.append(run(backend, args.timeout))
        print(json.dumps(results[-1]))
    if args.json:
        args.json.write_text(json.dumps({"host": device_class("cpu"), "runs": results}, indent=1))
    return results


if __name__ == "__main__":
    main()
