"""The worker's side of a job: claim, lease, progress, result, success and failure."""

from __future__ import annotations

from sqlalchemy.orm import Session

from quaff_core.train_events import EventKind
from store.errors import InvalidRequestError
from store.events import add_event
from store.ids import now_s
from store.job_states import ensure_can, transition
from store.models import Job


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
) -> None:
    """Worker: store progress (never touches status); commits."""
    job.step = step
    if total_steps is not None:
        job.total_steps = total_steps
    if epoch is not None:
        job.epoch = epoch
    if trained_tokens is not None:
        job.trained_tokens = trained_tokens
    job.estimated_finish = estimated_finish
    job.heartbeat_at = job.updated_at = now_s()
    session.commit()


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
