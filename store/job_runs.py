"""The worker's side of a job: claim, lease, progress, result, success and failure."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from quaff_core.train_events import EventKind
from store.errors import InvalidRequestError
from store.events import add_event
from store.ids import now_s
from store.job_states import ensure_can, transition
from store.models import Job

# The statuses in which a worker's steps still count (a pausing job checkpoints its next step).
PROGRESSING = ("running", "paused")


def claim_job(session: Session, job_id: str, worker_id: str) -> Job | None:
    """Worker: move a queued job to running under `worker_id`; None if it is not queued."""
    job = session.get(Job, job_id)
    if job is None or job.status != "queued":
        return None
    try:
        transition(session, job, "running", reason=f"Job claimed by worker {worker_id}")
    except InvalidRequestError:
        session.rollback()
        return None
    job.worker_id = worker_id
    job.heartbeat_at = now_s()
    job.attempts = (job.attempts or 0) + 1
    session.commit()
    return job


def current_status(session: Session, job: Job) -> str:
    """Worker: the status as stored now (poll between steps; stop on cancelled or paused)."""
    session.refresh(job, attribute_names=["status"])
    return job.status


def heartbeat(session: Session, job: Job, worker_id: str) -> None:
    """Worker: refresh the lease; commits."""
    job.worker_id = worker_id
    job.heartbeat_at = now_s()
    session.commit()


def record_progress(
    session: Session,
    job: Job,
    *,
    step: int,
    total_steps: int | None = None,
    epoch: float | None = None,
    trained_tokens: int | None = None,
    estimated_finish: int | None = None,
) -> bool:
    """Worker: store progress while the job is running or pausing (never touches status; a
    cancelled job keeps the step its cancel recorded); flushed, not committed. Returns whether
    it was stored."""
    now = now_s()
    values: dict[str, Any] = {"step": step, "estimated_finish": estimated_finish}
    values |= {"heartbeat_at": now, "updated_at": now}
    for name, value in (
        ("total_steps", total_steps), ("epoch", epoch), ("trained_tokens", trained_tokens)
    ):  # fmt: skip
        if value is not None:
            values[name] = value
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(PROGRESSING))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    stored = getattr(result, "rowcount", 1) == 1
    if stored:
        for name, value in values.items():
            set_committed_value(job, name, value)
    return stored


def set_result(
    session: Session,
    job: Job,
    *,
    trained_tokens: int | None = None,
    result_files: list[str] | None = None,
) -> None:
    """Worker: store result facts before `succeed_job` (flushed, not committed)."""
    if trained_tokens is not None:
        job.trained_tokens = trained_tokens
    if result_files is not None:
        job.result_files = list(result_files)
    session.flush()


def succeed_job(session: Session, job: Job) -> Job:
    """Worker: running -> succeeded (save the adapter first, which names the model); commits."""
    if not job.fine_tuned_model:
        raise ValueError(f"job {job.id} has no adapter; call store.adapters.save_adapter first")
    ensure_can(session, job, "succeeded")
    add_event(
        session,
        job.id,
        "New fine-tuned model created",
        kind=EventKind.MODEL_SAVED,
        data={"fine_tuned_model": job.fine_tuned_model},
    )
    transition(session, job, "succeeded", reason="The job has successfully completed")
    session.commit()
    return job


def fail_job(session: Session, job: Job, code: str, message: str, param: str | None = None) -> Job:
    """Worker: record the error and move to failed; commits."""
    ensure_can(session, job, "failed")
    job.error_code, job.error_message, job.error_param = code, message, param
    session.flush()
    transition(session, job, "failed", reason=f"Fine-tuning job failed: {message}", level="error")
    session.commit()
    return job
