"""/v1/fine_tuning/jobs: create (and enqueue), bad input, list by metadata, retrieve, controls."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kombu import Connection
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.main import create_app
from api.queue import JobQueue
from store import jobs
from store.db import session_factory
from store.models import Job
from store.queue import FINE_TUNE_QUEUE, FINE_TUNE_TASK
from store.settings import Settings
from tests.helpers import (
    KeyedProject,
    chat_jsonl,
    created_job,
    make_project,
    redis_unreachable,
    unavailable,
    upload,
    uploaded_file_id,
)
from tests.quaff_core.data.test_chat_format import OPENAI_DPO, OPENAI_TOOLS

JOB_FIELDS = {
    "id", "object", "created_at", "finished_at", "model", "fine_tuned_model", "organization_id",
    "status", "hyperparameters", "method", "training_file", "validation_file", "result_files",
    "trained_tokens", "error", "seed", "suffix", "user_provided_suffix", "estimated_finish",
    "integrations", "metadata", "lora", "peft", "quantization", "training", "resolved", "runtime",
    "outlier_map", "outlier_stability", "continued_from", "progress",
}  # fmt: skip


def _job_count(session: Session, project_id: str) -> int:
    return session.scalar(select(func.count()).where(Job.project_id == project_id)) or 0


def _queued_messages(settings: Settings) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in the fine-tune queue of the broker."""
    found = []
    with Connection(settings.broker_url) as conn:
        queue = conn.SimpleQueue(FINE_TUNE_QUEUE)
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                break
            args, _kwargs, _embed = message.decode()
            found.append((message.headers["task"], args))
            message.ack()
        queue.close()
    return found


def test_create_job_returns_every_field_and_enqueues(
    client: TestClient, keyed_project: KeyedProject, quaff_settings: Settings
) -> None:
    job = created_job(
        client,
        keyed_project,
        suffix="demo",
        seed=42,
        metadata={"team": "a"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        lora={"r": 8, "target_modules": ["q_proj", "v_proj"]},
        quantization={"outlier_strategy": "top_abs", "outlier_max_ratio": 0.02},
        training={"max_seq_length": 256, "lr_scheduler": "linear"},
    )
    assert set(job) == JOB_FIELDS
    assert job["object"] == "fine_tuning.job"
    assert job["runtime"] is None  # resolved by the worker that runs it
    assert job["outlier_stability"] is None  # measured at its checkpoints
    assert job["status"] == "queued"
    assert job["organization_id"] == keyed_project.project.id
    assert job["hyperparameters"] == {
        "n_epochs": 2,
        "batch_size": 4,
        "learning_rate_multiplier": 1.0,
    }
    assert job["method"]["supervised"]["hyperparameters"] == job["hyperparameters"]
    assert job["lora"] == {
        "r": 8,
        "alpha": 32.0,
        "dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "use_rslora": False,
        "use_dora": False,
    }
    assert job["peft"] == {"method": "lora", "num_virtual_tokens": 20}
    assert job["continued_from"] is None
    assert job["quantization"]["outlier_strategy"] == "top_abs"
    assert job["training"]["learning_rate"] is None  # as asked: derived from the multiplier
    assert job["resolved"] == {"learning_rate": pytest.approx(2e-4)}
    assert (job["seed"], job["suffix"], job["user_provided_suffix"]) == (42, "demo", "demo")
    assert job["metadata"] == {"team": "a"}
    assert job["progress"] == {"step": 0, "total_steps": None, "epoch": None}
    assert job["error"] is None
    assert _queued_messages(quaff_settings) == [(FINE_TUNE_TASK, [job["id"]])]


def test_create_job_with_unreachable_broker_stays_queued_with_a_warning(
    quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    broken = quaff_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as broken_client:
        job = created_job(broken_client, keyed_project)
        events = broken_client.get(
            f"/v1/fine_tuning/jobs/{job['id']}/events", headers=keyed_project.headers
        ).json()["data"]
    assert job["status"] == "queued"
    assert events[0]["level"] == "warn"
    assert "Could not reach the job queue" in events[0]["message"]


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        ({"model": "gpt-4o"}, 400, "model", "model_not_found"),
        ({"hyperparameters": {"n_epochs": 100}}, 400, "hyperparameters.n_epochs", None),
        ({"lora": {"r": 0}}, 400, "lora.r", None),
        ({"lora": {"rank": 4}}, 400, "lora.rank", None),
        ({"quantization": {"outlier_max_ratio": 0.9}}, 400, "quantization.outlier_max_ratio", None),
        ({"quantization": {"outlier_map": "om-missing"}}, 400, "quantization.outlier_map", None),
        ({"training": {"max_seq_length": 8}}, 400, "training.max_seq_length", None),
        ({"method": {"type": "rl"}}, 400, "method.type", None),
        ({"method": {"type": "dpo"}}, 400, "training_file", "invalid_file"),
        ({"model": "ft:tiny-llama:p::abcdefgh"}, 400, "model", "model_not_found"),
        (
            {"peft": {"method": "ia3", "num_virtual_tokens": 0}},
            400,
            "peft.num_virtual_tokens",
            None,
        ),
        ({"lora": {"use_dora": True}}, 400, "lora.use_dora", None),
        ({"suffix": "x" * 65}, 400, "suffix", None),
        ({"seed": -1}, 400, "seed", None),
        ({"metadata": {"k": 1}}, 400, "metadata.k", None),
        ({"training_file": "file-missing"}, 400, "training_file", "invalid_file"),
        ({"validation_file": "file-missing"}, 400, "validation_file", "invalid_file"),
        ({"frobnicate": True}, 400, "frobnicate", None),
    ],
)
def test_create_job_bad_input_changes_nothing(
    client: TestClient,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    body: dict[str, Any],
    status: int,
    param: str,
    code: str | None,
) -> None:
    payload = {"model": "tiny-llama", "training_file": uploaded_file_id(client, keyed_project)}
    payload.update(body)
    response = client.post("/v1/fine_tuning/jobs", headers=keyed_project.headers, json=payload)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert _job_count(db_session, keyed_project.project.id) == 0
    assert _queued_messages(quaff_settings) == []


def test_create_job_with_a_model_alias_stores_the_canonical_id(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    job = created_job(client, keyed_project, model="SmolLM2-135M-Instruct")
    assert job["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    again = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=keyed_project.headers)
    assert again.json()["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_create_job_too_few_examples(client: TestClient, keyed_project: KeyedProject) -> None:
    file_id = uploaded_file_id(client, keyed_project, n=9)
    response = client.post(
        "/v1/fine_tuning/jobs",
        headers=keyed_project.headers,
        json={"model": "tiny-llama", "training_file": file_id},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_n_examples", "training_file")
    assert "9 example(s)" in error["message"]


def test_create_job_with_an_invalid_file_is_refused(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    bad = upload(client, keyed_project, chat_jsonl(10) + b"[1, 2]\n").json()
    assert bad["status"] == "error"
    response = client.post(
        "/v1/fine_tuning/jobs",
        headers=keyed_project.headers,
        json={"model": "tiny-llama", "training_file": bad["id"]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "training_file"
    assert "line 11" in response.json()["error"]["message"]


def test_create_job_with_another_projects_file_is_refused(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    file_id = uploaded_file_id(client, keyed_project)
    other = make_project(db_session)
    response = client.post(
        "/v1/fine_tuning/jobs",
        headers=other.headers,
        json={"model": "tiny-llama", "training_file": file_id},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "training_file"
    assert _job_count(db_session, other.project.id) == 0


def test_list_jobs_with_metadata_filter_and_cursor(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    a = created_job(client, keyed_project, metadata={"team": "a"})
    b = created_job(client, keyed_project, metadata={"team": "b"})
    c = created_job(client, keyed_project, metadata={"team": "a", "x": "1"})
    headers = keyed_project.headers
    listed = client.get("/v1/fine_tuning/jobs", headers=headers).json()
    assert [j["id"] for j in listed["data"]] == [c["id"], b["id"], a["id"]]
    assert listed["data"][0]["metadata"] == {"team": "a", "x": "1"}
    assert listed["object"] == "list"
    filtered = client.get("/v1/fine_tuning/jobs?metadata[team]=a", headers=headers).json()
    assert [j["id"] for j in filtered["data"]] == [c["id"], a["id"]]
    both = client.get("/v1/fine_tuning/jobs?metadata[team]=a&metadata[x]=1", headers=headers)
    assert [j["id"] for j in both.json()["data"]] == [c["id"]]
    plain = created_job(client, keyed_project)
    nulls = client.get("/v1/fine_tuning/jobs?metadata=null", headers=headers).json()
    assert [j["id"] for j in nulls["data"]] == [plain["id"]]
    page = client.get(f"/v1/fine_tuning/jobs?limit=1&after={c['id']}", headers=headers).json()
    assert [j["id"] for j in page["data"]] == [b["id"]]
    assert page["has_more"] is True


def test_retrieve_job_not_found(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.get("/v1/fine_tuning/jobs/ftjob-nope", headers=keyed_project.headers)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "No fine-tuning job found with id 'ftjob-nope'.",
        "type": "not_found_error",
        "param": None,
        "code": None,
    }


def test_retrieve_job_of_another_project_is_not_found(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    job = created_job(client, keyed_project)
    other = make_project(db_session)
    for method, suffix in [
        ("GET", ""),
        ("POST", "/cancel"),
        ("POST", "/pause"),
        ("GET", "/events"),
    ]:
        response = client.request(
            method, f"/v1/fine_tuning/jobs/{job['id']}{suffix}", headers=other.headers
        )
        assert response.status_code == 404
    mine = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=keyed_project.headers)
    assert mine.json()["status"] == "queued"


def test_cancel_job_then_cancel_again_is_a_400(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    job = created_job(client, keyed_project)
    url = f"/v1/fine_tuning/jobs/{job['id']}/cancel"
    first = client.post(url, headers=keyed_project.headers)
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert first.json()["finished_at"] is not None
    second = client.post(url, headers=keyed_project.headers)
    assert second.status_code == 400
    error = second.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_job_state"
    assert error["message"] == (
        f"Job {job['id']} is cancelled and cannot become cancelled "
        "(from cancelled it can become: nothing, it has already finished)."
    )


@pytest.mark.parametrize(
    ("body", "missing"),
    [(None, "model"), ({}, "model"), ({"model": "tiny-llama"}, "training_file")],
)
def test_create_job_names_the_missing_parameter(
    client: TestClient, keyed_project: KeyedProject, body: dict[str, str] | None, missing: str
) -> None:
    url = "/v1/fine_tuning/jobs"
    response = client.post(url, headers=keyed_project.headers, json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == f"Missing required parameter: '{missing}'."
    assert error["param"] == missing


def test_pause_and_resume_reenqueues(
    client: TestClient, keyed_project: KeyedProject, quaff_settings: Settings
) -> None:
    job = created_job(client, keyed_project)
    base = f"/v1/fine_tuning/jobs/{job['id']}"
    assert client.post(f"{base}/resume", headers=keyed_project.headers).status_code == 400
    paused = client.post(f"{base}/pause", headers=keyed_project.headers)
    assert paused.json()["status"] == "paused"
    resumed = client.post(f"{base}/resume", headers=keyed_project.headers)
    assert resumed.json()["status"] == "queued"
    assert _queued_messages(quaff_settings) == [
        (FINE_TUNE_TASK, [job["id"]]),
        (FINE_TUNE_TASK, [job["id"]]),
    ]


def test_failed_job_shows_its_error(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    job_id = created_job(client, keyed_project)["id"]
    # simulate the worker with the store's own functions
    job = jobs.claim_job(db_session, job_id, "test-worker")
    assert job is not None
    jobs.fail_job(db_session, job, "out_of_memory", "CUDA out of memory", None)
    body = client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=keyed_project.headers).json()
    assert body["status"] == "failed"
    assert body["error"] == {
        "code": "out_of_memory",
        "message": "CUDA out of memory",
        "param": None,
    }


@pytest.mark.redis
def test_create_job_enqueues_on_redis(
    quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    reason = redis_unreachable("redis://127.0.0.1:6379/15")
    if reason:
        unavailable(reason)

    on_redis = quaff_settings.model_copy(update={"broker_url": "redis://127.0.0.1:6379/15"})
    with TestClient(create_app(on_redis)) as redis_client:
        job = created_job(redis_client, keyed_project)
    assert (FINE_TUNE_TASK, [job["id"]]) in _queued_messages(on_redis)


class _CommitCheckingQueue(JobQueue):
    """The real producer, recording whether the job row was committed when its task was sent."""

    def __init__(self, broker_url: str, settings: Settings) -> None:
        super().__init__(broker_url)
        self.settings = settings
        self.seen: list[tuple[str, str | None]] = []

    def enqueue(self, job_id: str) -> str:
        with session_factory(self.settings)() as other_session:
            row = other_session.get(Job, job_id)
            self.seen.append((job_id, row.status if row is not None else None))
        return super().enqueue(job_id)


def test_job_is_enqueued_only_after_its_row_commits(
    app: FastAPI, client: TestClient, keyed_project: KeyedProject, quaff_settings: Settings
) -> None:
    queue = _CommitCheckingQueue(quaff_settings.broker_url, quaff_settings)
    app.state.queue = queue
    job = created_job(client, keyed_project)
    assert queue.seen == [(job["id"], "queued")]
    assert _queued_messages(quaff_settings) == [(FINE_TUNE_TASK, [job["id"]])]


@pytest.mark.parametrize("row", [OPENAI_TOOLS, OPENAI_DPO], ids=["tool_calling", "dpo"])
def test_openai_example_files_upload_as_processed(
    client: TestClient, keyed_project: KeyedProject, row: dict[str, Any]
) -> None:
    data = b"".join(json.dumps(row).encode() + b"\n" for _ in range(10))
    response = upload(client, keyed_project, data)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processed"


def test_dpo_job_on_a_preference_file_records_method_and_beta(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    data = b"".join(json.dumps(OPENAI_DPO).encode() + b"\n" for _ in range(10))
    file_id = upload(client, keyed_project, data).json()["id"]
    body = {
        "model": "tiny-llama",
        "training_file": file_id,
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.3}}},
        "peft": {"method": "ia3"},
    }
    response = client.post("/v1/fine_tuning/jobs", headers=keyed_project.headers, json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["method"] == {"type": "dpo", "dpo": {"hyperparameters": job["hyperparameters"]}}
    assert job["hyperparameters"]["beta"] == 0.3
    assert job["peft"]["method"] == "ia3"
    chat = {**body, "training_file": uploaded_file_id(client, keyed_project)}
    refused = client.post("/v1/fine_tuning/jobs", headers=keyed_project.headers, json=chat)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "training_file"


RFT_LINE = {
    "messages": [{"role": "user", "content": "What is the date of 7 December 2026 in ISO form?"}],
    "reference_answer": "2026-12-07",
}
EXACT_DATE = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}


def test_reinforcement_job_records_its_grader_and_checks_it(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    data = b"".join(json.dumps(RFT_LINE).encode() + b"\n" for _ in range(10))
    uploaded = upload(client, keyed_project, data).json()
    assert uploaded["status"] == "processed", uploaded
    hyper = {"compute_multiplier": 2, "eval_interval": 3, "eval_samples": 2}
    body = {
        "model": "tiny-llama",
        "training_file": uploaded["id"],
        "method": {
            "type": "reinforcement",
            "reinforcement": {"grader": EXACT_DATE, "hyperparameters": hyper},
        },
    }
    response = client.post("/v1/fine_tuning/jobs", headers=keyed_project.headers, json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["method"]["type"] == "reinforcement"
    assert job["method"]["reinforcement"]["grader"] == EXACT_DATE
    assert job["hyperparameters"]["compute_multiplier"] == 2
    assert "beta" not in job["hyperparameters"]

    def refused(changed: dict[str, Any]) -> Any:
        answer = client.post(
            "/v1/fine_tuning/jobs", headers=keyed_project.headers, json={**body, **changed}
        )
        assert answer.status_code == 400, answer.text
        return answer.json()["error"]

    bad = {"type": "reinforcement", "reinforcement": {"grader": {**EXACT_DATE, "operation": "x"}}}
    assert refused({"method": bad})["param"] == "method.reinforcement.grader.operation"
    cosine = {**EXACT_DATE, "type": "text_similarity", "evaluation_metric": "cosine"}
    cosine.pop("operation")
    too_much = {"type": "reinforcement", "reinforcement": {"grader": cosine}}
    assert "cosine" in refused({"method": too_much})["message"]
    effort = {"grader": EXACT_DATE, "hyperparameters": {"reasoning_effort": "high"}}
    error = refused({"method": {"type": "reinforcement", "reinforcement": effort}})
    assert error["param"] == "method.reinforcement.hyperparameters.reasoning_effort"
    assert refused({"method": None})["param"] == "training_file"  # prompts need reinforcement
    chat = uploaded_file_id(client, keyed_project)
    assert refused({"training_file": chat})["param"] == "training_file"
