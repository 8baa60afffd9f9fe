"""Load on the request path: status polls, event lists and SSE streams from many loopback clients
while a worker trains, on SQLite (embedded) or PostgreSQL + Redis.

    python -m bench.load --backend sqlite --clients 50,200,1000 --seconds 20
    python -m bench.load --backend postgres --clients 50,200,1000 --seconds 20

The API (`quaff api`) and one worker (`quaff worker`, niced as `quaff serve` runs it) are real
processes on 127.0.0.1. Each client polls once per `--interval` seconds (a random phase) with its
own keep-alive connection; an SSE client opens the training job's stream, times its first event,
holds it `--hold` seconds and reconnects. Bounded: `--seconds` per phase, a 30 s client timeout.
Prints p50/p95/p99 (ms) and counts: 200, 503 (busy, with Retry-After), 429 (stream limit),
other 4xx/5xx, timeouts; the 200s a second (goodput) and the API process's CPU time per answer and
per 200 (from /proc). The overload scenarios are closed loops of pollers: `burst` clients send the
next poll as soon as one is answered (a 503 included), `polite` ones wait a 503's Retry-After:

    python -m bench.load --no-worker --scenarios poll,burst,polite --clients 50,200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from bench.common import command_line, environment, write_json
from bench.load_clients import CLIENTS_PER_KEY, run_phase
from bench.load_service import (
    ROOT,
    drop_schema,
    make_keys,
    settings_for,
    spawn,
    stop,
    training,
    training_job,
    wait_for,
)
from tests.processes import free_port

SCENARIOS = ("poll", "events", "sse")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the service, run every phase, stop everything; returns the results."""
    levels = [int(n) for n in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="quaff-load-") as tmp:
        settings = settings_for(args.backend, Path(tmp) / "data")
        keys = make_keys(settings, max(levels) // CLIENTS_PER_KEY + 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
        env.update(QUAFF_DATA_DIR=str(settings.data_dir), QUAFF_DATABASE_URL=settings.database_url,
                   QUAFF_BROKER_URL=settings.broker_url, QUAFF_DEVICE="cpu",
                   PYTHONPATH=str(ROOT))  # fmt: skip
        env.update(setting.split("=", 1) for setting in args.set)
        args.port = free_port()
        api = spawn(["api", "--port", str(args.port), "--no-migrate"], env, Path(tmp) / "api.log")
        worker = None
        base = f"http://127.0.0.1:{args.port}/v1"
        headers = {"Authorization": f"Bearer {keys[0]}"}
        try:
            with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
                wait_for("the API", lambda: http.get(f"{base[:-3]}/healthz").status_code == 200, 60)
                job_id = training_job(http, args.examples)
                if args.worker:
                    log = Path(tmp) / "worker.log"
                    worker = spawn(["worker"], env, log, nice=settings.worker_nice)
                    wait_for("training", lambda: training(http, job_id), 180)
                results = []
                for clients in levels:
                    for scenario in args.scenarios.split(","):
                        used = cpu_seconds(api.pid)
                        tally = asyncio.run(run_phase(scenario, clients, keys, job_id, args))
                        row = {"scenario": scenario, "clients": clients, **tally.row()}
                        row |= _cpu(cpu_seconds(api.pid) - used, row, args.seconds)
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
                    stop(process)
            if args.backend != "sqlite":
                drop_schema(settings)
    return {"backend": args.backend, "worker": args.worker, "interval": args.interval,
            "settings": args.set,
            "seconds": args.seconds, "trained_steps": step, "results": results}  # fmt: skip


COLUMNS = (
    "scenario", "clients", "n", "p50", "p95", "p99", "200", "503", "429", "timeout",
    "ok_per_s", "cpu_ms_per_request", "cpu_ms_per_ok",
)  # fmt: skip


def _cpu(seconds: float, row: dict[str, Any], phase_seconds: float) -> dict[str, Any]:
    """Goodput (200s a second) and the API process's CPU per answer and per 200."""
    ok, answered = row.get("200", 0), row["n"]
    return {
        "ok_per_s": round(ok / phase_seconds, 1),
        "cpu_ms_per_request": round(seconds * 1000 / answered, 3) if answered else None,
        "cpu_ms_per_ok": round(seconds * 1000 / ok, 3) if ok else None,
    }


def _line(row: dict[str, Any]) -> str:
    """One markdown table row; other outcomes (errors) are appended."""
    cells = [
        str(row.get(c, 0) if c in ("200", "503", "429", "timeout") else row.get(c)) for c in COLUMNS
    ]
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
    parser.add_argument(
        "--set", action="append", default=[], metavar="QUAFF_NAME=VALUE",
        help="a setting for the API and worker (repeat; e.g. QUAFF_POLL_CACHE_SECONDS=0)",
    )  # fmt: skip
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
