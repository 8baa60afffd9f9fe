"""The warm service against a cold script: two jobs through the real API and worker, beside HF
Trainer + PEFT LoRA as a script on the same data and steps.

    .venv/bin/python -m bench.service --json bench/results/service.json

The service (API + one worker, embedded defaults, a fresh data directory) gets a job on SmolLM2
with default options, then a second job on the same base with another training file (the bench's
long-answer date task, two seeds). For each job: created -> running (queue), running -> first
training step, and created -> succeeded, polled every 0.2 s. Each file is also trained by the
script (`bench/job_hf.py`: load, tokenise, train, save, as a fresh process) with the host's best
peer dtype (bf16 autocast where bf16 is native, else fp32), the service idle meanwhile. The
worker's resident memory with the warm base held is read after the second job.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from bench.common import command_line, environment, write_json
from bench.job import hf_command, make_data, run_hf
from bench.load_service import make_keys, settings_for, spawn, stop, wait_for
from quaff_core.quant.capabilities import AUTO, resolve_compute_dtype
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
POLL = 0.2


def best_peer_bf16() -> bool:
    """Whether the host's best plain-LoRA peer runs under bf16 autocast (bf16 native)."""
    return resolve_compute_dtype(AUTO, "cpu") == torch.bfloat16


def timeline(http: httpx.Client, job_id: str, created: float, timeout: float) -> dict[str, Any]:
    """Poll a job to its end: seconds from creation to running, to its first step, to the end."""
    marks: dict[str, float] = {}
    deadline = created + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/fine_tuning/jobs/{job_id}").json()
        now = time.monotonic() - created
        if job["status"] != "queued":
            marks.setdefault("running", now)
        if (job.get("progress") or {}).get("step", 0) >= 1:
            marks.setdefault("first_step", now)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            if job["status"] != "succeeded":
                raise RuntimeError(f"job {job_id} ended {job['status']}: {job['error']}")
            marks["succeeded"] = now
            return {"id": job_id, **{k: round(v, 2) for k, v in marks.items()}}
        time.sleep(POLL)
    raise RuntimeError(f"job {job_id} did not finish within {timeout} s")


def phases(http: httpx.Client, job_id: str) -> dict[str, float]:
    """Seconds between the job's phase events (second resolution, from the API)."""
    events = http.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]
    first: dict[str, int] = {}
    for event in reversed(events):
        first.setdefault(event.get("kind") or event["type"], int(event["created_at"]))
    start = first.get("job_started")
    if start is None:
        return {}
    return {k: v - start for k, v in first.items() if k != "job_created"}


def worker_rss_mb(pid: int) -> float:
    """The largest resident size (MiB) in the worker's process group (its pool process)."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pid:
                continue
            status = (entry / "status").read_text()
        except (OSError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return round(max(sizes, default=0.0), 1)


def submit(http: httpx.Client, path: Path, args: argparse.Namespace) -> tuple[str, float]:
    """Upload a file and create a default-options job on it; (job id, creation time)."""
    with path.open("rb") as fh:
        file_id = http.post(
            "/files", files={"file": (path.name, fh)}, data={"purpose": "fine-tune"}
        ).json()["id"]
    body = {
        "model": args.model,
        "training_file": file_id,
        "hyperparameters": {"n_epochs": 1, "batch_size": args.batch},
    }
    created = time.monotonic()
    job = http.post("/fine_tuning/jobs", json=body).json()
    if "id" not in job:
        raise RuntimeError(f"job creation failed: {job}")
    return str(job["id"]), created


def run_service(args: argparse.Namespace, files: list[Path], tmp: Path) -> dict[str, Any]:
    """Both jobs through a fresh service; their timelines, phases and the worker's memory."""
    settings = settings_for("sqlite", tmp / "data")
    key = make_keys(settings, 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(QUAFF_DATA_DIR=str(settings.data_dir), QUAFF_DEVICE="cpu", PYTHONPATH=str(ROOT))
    port = free_port()
    api = spawn(["api", "--port", str(port), "--no-migrate"], env, tmp / "api.log")
    worker = spawn(["worker"], env, tmp / "worker.log")
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", headers=headers) as http:
            wait_for("the API", lambda: http.get("/models").status_code == 200, 60)
            jobs = []
            for path in files:
                job_id, created = submit(http, path, args)
                jobs.append({**timeline(http, job_id, created, args.timeout)})
                jobs[-1]["phases"] = phases(http, job_id)
            rss = worker_rss_mb(worker.pid)
    finally:
        stop(worker)
        stop(api)
    return {"jobs": jobs, "worker_rss_mb": rss, "warm_bases_mb": settings.warm_bases_mb}


def print_table(result: dict[str, Any]) -> None:
    """The side-by-side table."""
    print(f"\nhost: {result['environment']['device']}; script dtype: {result['script_dtype']}")
    print("| job | running -> first step s | created -> succeeded s | script s | vs script |")
    print("|---|---:|---:|---:|---:|")
    for n, (job, script) in enumerate(zip(result["jobs"], result["scripts"], strict=True), 1):
        first = job["first_step"] - job["running"]
        ratio = script["wall_s"] / job["succeeded"]
        print(f"| {n} | {first:.1f} | {job['succeeded']:.1f} | {script['wall_s']:.1f} | "
              f"{ratio:.2f}x |")  # fmt: skip
    print(f"worker RSS with the warm base held: {result['worker_rss_mb']} MiB "
          f"(QUAFF_WARM_BASES_MB={result['warm_bases_mb']})")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="SmolLM2-135M-Instruct")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--variant", default="long", choices=("short", "long"))
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Scripts first (service not started), then the two jobs; print and save the table."""
    args = parse_args(argv)
    bf16 = best_peer_bf16()
    with tempfile.TemporaryDirectory(prefix="quaff-bench-service-") as tmp_dir:
        tmp = Path(tmp_dir)
        n = args.steps * args.batch
        files = [make_data(tmp / f"data{seed}", args.variant, n, seed) for seed in (1, 2)]
        scripts = []
        for i, path in enumerate(files):
            cmd = hf_command(args.model, path, tmp / f"hf{i}", args.steps, args.batch)
            scripts.append(run_hf(cmd if bf16 else [*cmd, "--no-bf16"]))
        service = run_service(args, files, tmp)
    result = {
        "command": command_line("bench.service", argv),
        "environment": environment(os.cpu_count() or 1),
        "script_dtype": "bf16 autocast" if bf16 else "fp32",
        "steps": args.steps,
        "batch": args.batch,
        "variant": args.variant,
        "scripts": scripts,
        **service,
    }
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
