"""store.job_runs: the worker's calls, driven here as the worker would."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.checkpoints import latest_checkpoint, save_checkpoint
from store.errors import InvalidRequestError
from store.events import list_events
from store.pages import Cursor
from store.settings import Settings
from tests.helpers import KeyedProject, queued_job


def test_worker_lifecycle_through_store_calls(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    job = queued_job(db_session, quaff_settings, keyed_project, suffix="s1")
    claimed = jobs.claim_job(db_session, job.id, "worker-1")
    assert claimed is not None
    assert (claimed.status, claimed.worker_id, claimed.attempts) == ("running", "worker-1", 1)
    assert claimed.started_at is not None
    assert jobs.claim_job(db_session, job.id, "worker-2") is None
    assert jobs.record_progress(db_session, job, step=5, total_steps=10, trained_tokens=640)
    db_session.commit()
    ckpt = save_checkpoint(db_session, blobs, job, step=5, metrics={"train_loss": 1.5}, source=b"c")
    assert latest_checkpoint(db_session, job.id) == ckpt
    assert ckpt.fine_tuned_model_checkpoint.endswith(":ckpt-step-5")
    adapter = save_adapter(db_session, blobs, job, b"adapter-bytes")
    jobs.set_result(db_session, job, trained_tokens=1280, result_files=[])
    jobs.succeed_job(db_session, job)
    assert job.status == "succeeded"
    assert job.finished_at is not None
    name = f"ft:tiny-llama:{keyed_project.project.name}:s1:{job.id[-8:]}"
    assert job.fine_tuned_model == adapter.fine_tuned_model == name
    assert blobs.read_bytes(adapter.blob_key) == b"adapter-bytes"
    newest = list_events(db_session, job.id, Cursor(limit=2)).rows
    assert [e.message for e in newest] == [
        "The job has successfully completed",
        "New fine-tuned model created",
    ]


def test_worker_sees_a_cancel_and_cannot_succeed_afterwards(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    worker_view = jobs.claim_job(db_session, job.id, "w")
    assert worker_view is not None
    jobs.cancel_job(db_session, job)
    assert jobs.current_status(db_session, worker_view) == "cancelled"
    with pytest.raises(InvalidRequestError, match="cancelled and cannot become failed"):
        jobs.fail_job(db_session, worker_view, "oom", "out of memory")


def test_fail_job_records_the_error(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    jobs.fail_job(db_session, job, "invalid_training_file", "line 3: bad", "training_file")
    assert (job.status, job.error_code, job.error_param) == (
        "failed",
        "invalid_training_file",
        "training_file",
    )
    (last,) = list_events(db_session, job.id, Cursor(limit=1)).rows
    assert (last.level, last.message) == ("error", "Fine-tuning job failed: line 3: bad")
