"""Jobs: creation rules, the transition table, and the worker's calls (simulated here)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.checkpoints import latest_checkpoint, save_checkpoint
from store.errors import InvalidRequestError
from store.events import events_since, list_events
from store.models import Job
from store.settings import Settings
from tests.conftest import KeyedProject, chat_jsonl, store_training_file


def _job(session: Session, settings: Settings, keyed: KeyedProject, **body: Any) -> Job:
    train = store_training_file(session, settings, keyed.project.id, chat_jsonl(10))
    return jobs.create_job(
        session,
        settings,
        keyed.project.id,
        {"model": "tiny-llama", "training_file": train.id, **body},
    )


def test_create_job_is_queued_with_resolved_options(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = _job(db_session, quaff_settings, keyed_project, suffix="demo", seed=7)
    assert job.status == "queued"
    assert job.hyperparameters == {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}
    assert job.seed == 7
    assert [e.message for e in events_since(db_session, job.id)] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {job.training_file_id}",
        "Files validated, moving job to queued state",
    ]


def test_every_transition_in_the_table_and_no_other(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = _job(db_session, quaff_settings, keyed_project)
    for old, allowed in jobs.TRANSITIONS.items():
        for new in jobs.TRANSITIONS:
            job.status = old
            db_session.commit()
            if new in allowed:
                jobs.transition(db_session, job, new)
                assert job.status == new
            else:
                with pytest.raises(InvalidRequestError, match=f"is {old} and cannot become {new}"):
                    jobs.transition(db_session, job, new)
                assert job.status == old
            db_session.rollback()


def test_cancelling_a_finished_job_is_refused(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = _job(db_session, quaff_settings, keyed_project)
    jobs.cancel_job(db_session, job)
    with pytest.raises(InvalidRequestError) as exc:
        jobs.cancel_job(db_session, job)
    assert exc.value.status_code == 400
    assert exc.value.code == "invalid_job_state"
    assert "already finished" in exc.value.message


def test_worker_lifecycle_through_store_calls(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    job = _job(db_session, quaff_settings, keyed_project, suffix="s1")
    claimed = jobs.claim_job(db_session, job.id, "worker-1")
    assert claimed is not None
    assert (claimed.status, claimed.worker_id, claimed.attempts) == ("running", "worker-1", 1)
    assert claimed.started_at is not None
    assert jobs.claim_job(db_session, job.id, "worker-2") is None
    jobs.record_progress(db_session, job, step=5, total_steps=10, epoch=0.5, trained_tokens=640)
    ckpt = save_checkpoint(db_session, blobs, job, step=5, metrics={"train_loss": 1.5}, source=b"c")
    assert latest_checkpoint(db_session, job.id) == ckpt
    assert ckpt.fine_tuned_model_checkpoint.endswith(":ckpt-step-5")
    adapter = save_adapter(db_session, blobs, job, b"adapter-bytes")
    jobs.set_result(db_session, job, trained_tokens=1280, result_files=[])
    jobs.succeed_job(db_session, job)
    assert job.status == "succeeded"
    assert job.finished_at is not None
    assert job.fine_tuned_model == adapter.fine_tuned_model == f"ft:tiny-llama:s1:{job.id[-8:]}"
    assert blobs.read_bytes(adapter.blob_key) == b"adapter-bytes"
    newest, _ = list_events(db_session, job.id, limit=2)
    assert [e.message for e in newest] == [
        "The job has successfully completed",
        "New fine-tuned model created",
    ]


def test_worker_sees_a_cancel_and_cannot_succeed_afterwards(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = _job(db_session, quaff_settings, keyed_project)
    worker_view = jobs.claim_job(db_session, job.id, "w")
    assert worker_view is not None
    jobs.cancel_job(db_session, job)
    assert jobs.current_status(db_session, worker_view) == "cancelled"
    with pytest.raises(InvalidRequestError, match="cancelled and cannot become failed"):
        jobs.fail_job(db_session, worker_view, "oom", "out of memory")


def test_fail_job_records_the_error(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = _job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    jobs.fail_job(db_session, job, "invalid_training_file", "line 3: bad", "training_file")
    assert (job.status, job.error_code, job.error_param) == (
        "failed",
        "invalid_training_file",
        "training_file",
    )
    (last,), _ = list_events(db_session, job.id, limit=1)
    assert (last.level, last.message) == ("error", "Fine-tuning job failed: line 3: bad")


def test_pause_and_resume(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = _job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    assert jobs.pause_job(db_session, job).status == "paused"
    assert jobs.resume_job(db_session, job).status == "queued"


def test_too_few_examples_is_refused(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    small = store_training_file(db_session, quaff_settings, keyed_project.project.id, chat_jsonl(9))
    with pytest.raises(InvalidRequestError) as exc:
        jobs.create_job(
            db_session,
            quaff_settings,
            keyed_project.project.id,
            {"model": "tiny-llama", "training_file": small.id},
        )
    assert (exc.value.code, exc.value.param) == ("invalid_n_examples", "training_file")


def test_reclaim_stale_job_moves_the_lease_only_when_expired(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = _job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w1")
    assert jobs.reclaim_stale_job(db_session, job.id, "w2", lease_seconds=3600) is None
    job.heartbeat_at = (job.heartbeat_at or 0) - 7200  # the first worker went silent two hours ago
    db_session.commit()
    taken = jobs.reclaim_stale_job(db_session, job.id, "w2", lease_seconds=3600)
    assert taken is not None
    assert (taken.status, taken.worker_id, taken.attempts) == ("running", "w2", 2)
