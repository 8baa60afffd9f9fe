"""`run_job` in-process: idempotent on finished jobs, actionable errors, results kept on failure."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import worker.single
from store import jobs
from store.blobs import BlobStore
from store.models import File, JobEvent
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl, queued_job, reloaded, store_training_file
from worker.pipeline import out_of_memory_error, run_job


def n_events(session: Session, job_id: str) -> int:
    return int(session.scalar(select(func.count()).where(JobEvent.job_id == job_id)) or 0)


def test_finished_and_cancelled_jobs_are_left_alone(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.cancel_job(db_session, job)
    before = n_events(db_session, job.id)
    assert run_job(job.id, quaff_settings, "test:1") == "skipped"
    assert run_job("ftjob-missing", quaff_settings, "test:1") == "skipped"
    job = reloaded(db_session, job)
    assert job.status == "cancelled"
    assert job.worker_id is None
    assert job.attempts == 0
    assert n_events(db_session, job.id) == before


def test_paused_queued_job_is_not_claimed(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.pause_job(db_session, job)
    assert run_job(job.id, quaff_settings, "test:1") == "skipped"
    assert reloaded(db_session, job).status == "paused"


def test_nothing_to_train_fails_naming_max_seq_length(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project, training={"max_seq_length": 16})
    assert run_job(job.id, quaff_settings, "test:1") == "failed"
    job = reloaded(db_session, job)
    assert job.status == "failed"
    assert job.error_code == "invalid_training_data"
    assert job.error_param == "training.max_seq_length"
    assert job.error_message is not None
    assert "raise training.max_seq_length" in job.error_message
    assert job.attempts == 1
    assert job.finished_at is not None
    messages = db_session.scalars(select(JobEvent.message).where(JobEvent.job_id == job.id)).all()
    assert f"Fine-tuning job failed: {job.error_message}" in messages
    assert run_job(job.id, quaff_settings, "test:2") == "skipped"


def test_missing_training_blob_fails_naming_the_file(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    row = db_session.get(File, job.training_file_id)
    assert row is not None
    BlobStore(quaff_settings.blob_dir).delete(row.blob_key)
    assert run_job(job.id, quaff_settings, "test:1") == "failed"
    job = reloaded(db_session, job)
    assert (job.error_code, job.error_param) == ("invalid_file", "training_file")
    assert job.error_message == f"File {row.id} no longer exists."


def test_fractional_lora_alpha_trains(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(
        db_session,
        quaff_settings,
        keyed_project,
        hyperparameters={"n_epochs": 1},
        lora={"alpha": 16.5},
        training={"max_seq_length": 64},
    )
    assert run_job(job.id, quaff_settings, "test:1") == "succeeded"
    assert reloaded(db_session, job).lora["alpha"] == 16.5


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "out_of_memory"),
        (MemoryError(), "out_of_memory"),
        (RuntimeError("the allocator ran out of memory"), "internal_error"),
    ],
)
def test_out_of_memory_is_recognised_by_its_class(
    db_session: Session,
    quaff_settings: Settings,
    keyed_project: KeyedProject,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    code: str,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(worker.single, "train", fail)
    job = queued_job(db_session, quaff_settings, keyed_project, training={"max_seq_length": 64})
    assert run_job(job.id, quaff_settings, "test:1") == "failed"
    job = reloaded(db_session, job)
    assert job.error_code == code
    if code == "out_of_memory":
        assert job.error_param == "hyperparameters.batch_size"


def test_dropped_examples_are_reported(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    rows = (
        chat_jsonl(10)
        + json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "x" * 400},
                    {"role": "assistant", "content": "y"},
                ]
            }
        ).encode()
        + b"\n"
    )
    training = store_training_file(db_session, quaff_settings, keyed_project.project.id, rows)
    job = jobs.create_job(
        db_session,
        quaff_settings,
        keyed_project.project.id,
        {
            "model": "tiny-llama",
            "training_file": training.id,
            "hyperparameters": {"n_epochs": 1},
            "training": {"max_seq_length": 64},
        },
    )
    assert run_job(job.id, quaff_settings, "test:1") == "succeeded"
    events = db_session.scalars(
        select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.kind == "examples_dropped")
    ).all()
    assert len(events) == 1
    assert events[0].data == {
        "dataset": "training",
        "count": 1,
        "reason": "no_trainable_token",
        "max_seq_length": 64,
    }


@pytest.mark.parametrize("outcome", ["cancelled", "succeeded"])
def test_terminal_jobs_never_run(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject, outcome: str
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    assert jobs.claim_job(db_session, job.id, "other:1") is not None
    if outcome == "cancelled":
        jobs.cancel_job(db_session, job)
    else:
        job.fine_tuned_model = "ft:tiny-llama::x"
        jobs.succeed_job(db_session, job)
    assert run_job(job.id, quaff_settings, "test:1") == "skipped"
    assert reloaded(db_session, job).status == outcome


def test_unloadable_model_fails_naming_model(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    job.model = "./no-such-model"
    db_session.commit()
    assert run_job(job.id, quaff_settings, "test:1") == "failed"
    job = reloaded(db_session, job)
    assert (job.error_code, job.error_param) == ("model_not_available", "model")
    assert job.error_message is not None
    assert job.error_message.startswith("Cannot load ./no-such-model: unknown base model")


def test_out_of_memory_error_names_the_batch_size(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(
        db_session,
        quaff_settings,
        keyed_project,
        hyperparameters={"batch_size": 64},
        training={"max_seq_length": 2048},
    )
    failure = out_of_memory_error(job, "cuda")
    assert (failure.code, failure.param) == ("out_of_memory", "hyperparameters.batch_size")
    assert failure.message.startswith(
        "Out of cuda memory with batch_size=64 and max_seq_length=2048."
    )


def test_unquantized_job_with_nothing_to_train_names_max_seq_length(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(
        db_session,
        quaff_settings,
        keyed_project,
        quantization={"method": "none"},
        training={"max_seq_length": 16},
    )
    assert run_job(job.id, quaff_settings, "test:1") == "failed"
    job = reloaded(db_session, job)
    assert (job.error_code, job.error_param) == ("invalid_training_data", "training.max_seq_length")
    assert job.error_message is not None
    assert job.error_message.startswith("Nothing to train on: ")


def test_bf16_compute_job_succeeds_and_records_its_options(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(
        db_session,
        quaff_settings,
        keyed_project,
        hyperparameters={"n_epochs": 1, "batch_size": 4},
        quantization={"compute_dtype": "bfloat16"},
        training={"max_seq_length": 64},
    )
    assert run_job(job.id, quaff_settings, "test:1") == "succeeded"
    job = reloaded(db_session, job)
    assert job.quantization["compute_dtype"] == "bfloat16"
    assert job.fine_tuned_model is not None
    assert (job.trained_tokens or 0) > 0
