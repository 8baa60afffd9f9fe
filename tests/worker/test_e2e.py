"""End to end with real processes: the `openai` SDK drives `quaff api` and `quaff worker` through
real tiny-llama fine-tunes, on the embedded defaults and on Redis + PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from cli.serve import CURL_LINE, SDK_SNIPPET
from tests.processes import ROOT, Service, wait_for

pytestmark = pytest.mark.slow

EXTRA = {
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
    "quantization": {"method": "quaff", "outlier_strategy": "top_abs", "outlier_max_ratio": 0.05},
}
LOAD_ADAPTER = """
import sys, torch
from peft import PeftModel
from quaff_core.models.loading import load_base_model
base, tok = load_base_model("tiny-llama")
model = PeftModel.from_pretrained(base, sys.argv[1])
trained = [n for n, p in model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
logits = model(input_ids=tok("What is 2 plus 2?", return_tensors="pt")["input_ids"]).logits
print(json.dumps({"trained": len(trained), "finite": bool(torch.isfinite(logits).all())}))
""".replace("import sys, torch", "import json, sys, torch")


def training_data(n: int = 12) -> bytes:
    """`n` chat examples (a different set per `n`, so each size is its own dataset)."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."},
            ]
        }
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def run_cli(svc: Service, *argv: str) -> subprocess.CompletedProcess[str]:
    """`quaff ARGV...` as a separate process with the service's environment."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *argv],
        cwd=ROOT,
        env=svc.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def create_job(
    sdk: OpenAI,
    file_id: str,
    *,
    epochs: int,
    batch_size: int,
    n_checkpoints: int = 1,
    max_seq_length: int = 48,
) -> str:
    """Create a job with the LoRA/quantization options as `extra_body`; returns its id."""
    job = sdk.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=file_id,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": epochs, "batch_size": batch_size}},
        },
        suffix="e2e",
        seed=7,
        extra_body={
            **EXTRA,
            "training": {
                "max_seq_length": max_seq_length,
                "learning_rate": 3e-3,
                "n_checkpoints": n_checkpoints,
            },
        },
    )
    assert job.status == "queued"
    return job.id


def messages(sdk: OpenAI, job_id: str) -> list[Any]:
    """Every event of a job, oldest first."""
    page = sdk.fine_tuning.jobs.list_events(job_id, limit=1000)
    return list(reversed(page.data))


def wait_status(svc: Service, sdk: OpenAI, job_id: str, status: str, timeout: float = 150) -> Any:
    """Poll the job until it has `status`; fail with the logs if it ends otherwise."""

    def check() -> Any:
        if not any(w.poll() is None for w in svc.workers):
            pytest.fail(f"no worker is running\n{svc.log_tail()}")
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status == status:
            return job
        if job.status in ("succeeded", "failed", "cancelled"):
            pytest.fail(f"job ended {job.status} ({job.error}), not {status}\n{svc.log_tail()}")
        return None

    return wait_for(f"job {job_id} to be {status}", check, timeout=timeout)


def wait_step(svc: Service, sdk: OpenAI, job_id: str, step: int) -> None:
    """Wait until the running job reports `step` in its progress."""

    def check() -> bool:
        job = sdk.fine_tuning.jobs.retrieve(job_id)
        if job.status not in ("queued", "running"):
            pytest.fail(f"job is {job.status} ({job.error})\n{svc.log_tail()}")
        return bool((job.model_extra or {})["progress"]["step"] >= step)

    wait_for(f"job {job_id} to reach step {step}", check)


def wait_event(sdk: OpenAI, job_id: str, prefix: str, timeout: float = 120) -> Any:
    """Wait for an event whose message starts with `prefix`."""
    return wait_for(
        f"an event '{prefix}…' of {job_id}",
        lambda: next((e for e in messages(sdk, job_id) if e.message.startswith(prefix)), None),
        timeout=timeout,
    )


def test_fine_tune_download_and_reuse_outlier_map(service: Service, tmp_path: Path) -> None:
    sdk = service.sdk()
    data = training_data(12)
    file_id = sdk.files.create(file=("train.jsonl", data), purpose="fine-tune").id
    job_id = create_job(sdk, file_id, epochs=1, batch_size=2, n_checkpoints=2)

    job = wait_status(service, sdk, job_id, "succeeded")
    assert re.fullmatch(rf"ft:tiny-llama:e2e-[0-9a-f]{{8}}:e2e:{job_id[-8:]}", job.fine_tuned_model)
    assert job.trained_tokens is not None
    assert job.trained_tokens > 0
    assert job.error is None
    assert job.model_extra is not None
    assert job.model_extra["progress"]["step"] == 6
    map_id = job.model_extra["outlier_map"]
    assert map_id.startswith("om-")

    events = messages(sdk, job_id)
    texts = [e.message for e in events]
    # the base's one map: calibrated on the general chat set, whatever the job's data
    assert "Calibrating outlier channels on 48 examples" in texts
    assert any(t.startswith(f"Stored outlier map {map_id}") for t in texts)
    assert any(t.startswith("Quantized ") and "linear layers to int8" in t for t in texts)
    assert texts[-1] == "The job has successfully completed"
    metrics = [e for e in events if e.type == "metrics"]
    assert [e.data["step"] for e in metrics] == [1, 2, 3, 4, 5, 6]
    assert metrics[-1].message.startswith("Step 6/6: training loss=")
    assert set(metrics[-1].data) >= {"train_loss", "learning_rate", "total_steps"}

    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job_id).data
    assert [c.step_number for c in checkpoints] == [6, 3]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-6"

    files = {f: sdk.files.retrieve(f) for f in job.result_files}
    assert {f.purpose for f in files.values()} == {"fine-tune-results"}
    csv_id = next(f for f, row in files.items() if row.filename.endswith(".csv"))
    rows = list(csv.DictReader(io.StringIO(sdk.files.content(csv_id).text)))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]

    response = httpx.get(
        f"{service.base_url}/fine_tuning/jobs/{job_id}/adapter",
        headers={"Authorization": f"Bearer {service.api_key}"},
        timeout=60,
    )
    assert response.status_code == 200
    adapter = tmp_path / "adapter"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        tar.extractall(adapter, filter="data")
    assert {"adapter_config.json", "adapter_model.safetensors", "quaff.json"} <= {
        p.name for p in adapter.iterdir()
    }
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_ADAPTER, str(adapter)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    report = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert report["finite"] is True
    assert report["trained"] > 0

    # another file on the same base: the base's map, on the base the worker kept warm
    other = sdk.files.create(file=("other.jsonl", training_data(10)), purpose="fine-tune").id
    again = create_job(sdk, other, epochs=1, batch_size=4)
    second = wait_status(service, sdk, again, "succeeded")
    assert second.model_extra is not None
    assert second.model_extra["outlier_map"] == map_id
    events = messages(sdk, again)
    texts = [e.message for e in events]
    assert any(t.startswith(f"Reusing outlier map {map_id}") for t in texts)
    assert [e.data for e in events if e.model_extra and e.model_extra.get("kind") == "warm_base"]
    assert not any(t.startswith(("Calibrating", "Quantized", "Loading base model")) for t in texts)


def test_cancel_keeps_the_job_cancelled(service: Service) -> None:
    sdk = service.sdk()
    file_id = sdk.files.create(file=("train.jsonl", training_data(13)), purpose="fine-tune").id
    job_id = create_job(sdk, file_id, epochs=20, batch_size=1)
    wait_step(service, sdk, job_id, 1)
    cancelled = sdk.fine_tuning.jobs.cancel(job_id)
    assert cancelled.status == "cancelled"
    wait_for(
        "the worker to leave the cancelled job",
        lambda: f"job {job_id} stopped at step" in service.log_tail(),
    )
    events = messages(sdk, job_id)
    assert events[-1].message == "Job cancelled by the user"  # nothing after the terminal event
    job = sdk.fine_tuning.jobs.retrieve(job_id)
    assert job.status == "cancelled"
    assert job.fine_tuned_model is None
    assert job.finished_at is not None


def test_pause_then_resume_continues_from_the_checkpoint(service: Service) -> None:
    sdk = service.sdk()
    file_id = sdk.files.create(file=("train.jsonl", training_data(14)), purpose="fine-tune").id
    # long enough that a warm tiny base cannot finish between two polls of the step
    steps = 7 * 20
    job_id = create_job(sdk, file_id, epochs=20, batch_size=2)
    wait_step(service, sdk, job_id, 1)
    assert sdk.fine_tuning.jobs.pause(job_id).status == "paused"
    paused = wait_event(sdk, job_id, "Training paused at step ")
    step = int(paused.message.split("step ")[1].split("/")[0])
    assert step < steps
    assert [c.step_number for c in sdk.fine_tuning.jobs.checkpoints.list(job_id).data] == [step]
    assert sdk.fine_tuning.jobs.retrieve(job_id).status == "paused"

    assert sdk.fine_tuning.jobs.resume(job_id).status == "queued"
    job = wait_status(service, sdk, job_id, "succeeded")
    assert job.fine_tuned_model is not None
    events = messages(sdk, job_id)
    texts = [e.message for e in events]
    resumed_at = texts.index(next(t for t in texts if t.startswith("Resuming from checkpoint")))
    assert texts[resumed_at].startswith(f"Resuming from checkpoint at step {step} ")
    later_steps = [e.data["step"] for e in events[resumed_at:] if e.type == "metrics"]
    assert later_steps == list(range(step + 1, steps + 1))


def test_client_cli_creates_watches_and_downloads(service: Service, tmp_path: Path) -> None:
    train = tmp_path / "train.jsonl"
    train.write_bytes(training_data(10))
    base = ["--base-url", service.base_url, "--api-key", service.api_key]
    created = run_cli(
        service,
        "jobs",
        *base,
        "create",
        "--model",
        "tiny-llama",
        "--file",
        str(train),
        "--epochs",
        "1",
        "--batch-size",
        "5",
        "--lora",
        '{"r": 4}',
        "--training",
        '{"max_seq_length": 48}',
        "--watch",
    )
    assert created.returncode == 0, created.stderr + service.log_tail()
    job_id = created.stdout.splitlines()[0]
    assert job_id.startswith("ftjob-")
    assert "step 2/2" in created.stdout
    assert re.search(
        rf"job {job_id} succeeded: ft:tiny-llama:e2e-\w+::{job_id[-8:]}", created.stdout
    )

    target = tmp_path / "adapter"
    downloaded = run_cli(service, "jobs", *base, "download", job_id, "-o", str(target))
    assert downloaded.returncode == 0, downloaded.stderr
    assert (target / "adapter_config.json").is_file()
    assert json.loads((target / "quaff.json").read_text())["base_model"] == "tiny-llama"

    missing = run_cli(service, "jobs", *base, "watch", "ftjob-nope")
    assert missing.returncode == 1
    assert "HTTP 404" in missing.stderr


def test_printed_snippets_work(service: Service, tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(service.api_key + "\n")
    code = SDK_SNIPPET.format(base_url=service.base_url, key_file=key_file)
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert ran.returncode == 0, ran.stderr
    job_id, status = ran.stdout.split()
    assert status == "queued"
    curl = CURL_LINE.format(base_url=service.base_url, key_file=key_file)
    listed = subprocess.run(
        curl, shell=True, capture_output=True, text=True, timeout=60, check=False
    )
    assert listed.returncode == 0, listed.stderr
    assert job_id in [job["id"] for job in json.loads(listed.stdout)["data"]]
    sdk = service.sdk()
    sdk.fine_tuning.jobs.cancel(job_id)
    wait_for(
        "the worker to leave the cancelled job",
        lambda: any(
            e.message.startswith(("Training stopped", "Job cancelled"))
            for e in messages(sdk, job_id)
        ),
    )


def test_stopped_worker_hands_its_job_back(service: Service) -> None:
    sdk = service.sdk()
    file_id = sdk.files.create(file=("train.jsonl", training_data(17)), purpose="fine-tune").id
    job_id = create_job(sdk, file_id, epochs=20, batch_size=2)  # 180 steps: still running when
    wait_step(service, sdk, job_id, 1)  # a poll (up to 2 s old) says step 1 on a warm worker
    (worker,) = [w for w in service.workers if w.poll() is None]
    worker.send_signal(signal.SIGTERM)  # the main process only, as `docker stop` does
    assert worker.wait(timeout=120) == 0
    job = sdk.fine_tuning.jobs.retrieve(job_id)
    assert job.status == "queued"
    (checkpoint,) = sdk.fine_tuning.jobs.checkpoints.list(job_id).data
    assert checkpoint.step_number < 180
    texts = [e.message for e in messages(sdk, job_id)]
    assert texts[-2].endswith(
        f"is shutting down; checkpoint saved at step {checkpoint.step_number}"
    )
    assert texts[-1] == "Job re-queued for another worker"

    service.start_worker()
    job = wait_status(service, sdk, job_id, "succeeded")
    texts = [e.message for e in messages(sdk, job_id)]
    resumed = next(t for t in texts if t.startswith("Resuming from checkpoint"))
    assert resumed.startswith(f"Resuming from checkpoint at step {checkpoint.step_number} ")


def test_killed_worker_job_resumes_on_a_new_worker(service: Service) -> None:
    sdk = service.sdk()
    file_id = sdk.files.create(file=("train.jsonl", training_data(16)), purpose="fine-tune").id
    job_id = create_job(sdk, file_id, epochs=3, batch_size=2, n_checkpoints=6)
    first = wait_for(
        "a stored checkpoint",
        lambda: sdk.fine_tuning.jobs.checkpoints.list(job_id).data,
    )
    (worker,) = [w for w in service.workers if w.poll() is None]
    service.kill_worker(worker)
    assert sdk.fine_tuning.jobs.retrieve(job_id).status == "running"
    service.start_worker()

    job = wait_status(service, sdk, job_id, "succeeded", timeout=200)
    assert job.fine_tuned_model is not None
    texts = [e.message for e in messages(sdk, job_id)]
    assert any(("stopped responding" in t or "has ended" in t) and "took over" in t for t in texts)
    resumed = next(t for t in texts if t.startswith("Resuming from checkpoint at step "))
    assert int(resumed.split("step ")[1].split(" ")[0]) >= first[0].step_number
    assert texts.count("Fine-tuning job started (attempt 1)") == 1
    assert "Fine-tuning job started (attempt 2)" in texts
    steps = [e.data["step"] for e in messages(sdk, job_id) if e.type == "metrics"]
    assert sorted(steps) == list(range(1, 25)), "re-trained steps replace the lost ones"


def test_a_killed_local_worker_is_taken_over_long_before_its_lease_ends(service: Service) -> None:
    long_lease = {"QUAFF_WORKER_LEASE_SECONDS": "600", "QUAFF_WORKER_HEARTBEAT_SECONDS": "5"}
    for worker in [w for w in service.workers if w.poll() is None]:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
    worker = service.start_worker(long_lease)
    sdk = service.sdk()
    file_id = sdk.files.create(file=("train.jsonl", training_data(16)), purpose="fine-tune").id
    job_id = create_job(sdk, file_id, epochs=3, batch_size=2, n_checkpoints=6)
    wait_for("a stored checkpoint", lambda: sdk.fine_tuning.jobs.checkpoints.list(job_id).data)
    service.kill_worker(worker)  # kill -9 of the worker and its pool: no hand-back
    service.start_worker(long_lease)
    wait_for(  # a lease of 600 s, yet the new worker on this host takes the job at once
        "the new worker to take the job over",
        lambda: any(" has ended; worker " in e.message for e in messages(sdk, job_id)),
        timeout=60,
    )
    assert wait_status(service, sdk, job_id, "succeeded", timeout=300).fine_tuned_model
    texts = [e.message for e in messages(sdk, job_id)]
    assert texts.count("Fine-tuning job started (attempt 2)") == 1
    steps = [e.data["step"] for e in messages(sdk, job_id) if e.type == "metrics"]
    assert sorted(steps) == list(range(1, 25)), "no step is counted twice"
