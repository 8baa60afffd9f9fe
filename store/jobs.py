"""Fine-tuning jobs: read, list and the user's controls (cancel, pause, resume).

Creation lives in `store.job_create`, the transition table in `store.job_states`, the worker's
calls in `store.job_runs` and the model names in `store.model_names`; all are re-exported here
so callers can use `store.jobs.<name>` for everything about jobs.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.errors import InvalidRequestError
from store.events import ServiceEvent, add_event
from store.job_create import MIN_TRAINING_EXAMPLES, create_job
from store.job_metadata import check_metadata_key
from store.job_runs import (
    claim_job,
    current_status,
    fail_job,
    heartbeat,
    record_progress,
    set_result,
    succeed_job,
)
from store.job_states import check_transition, ensure_can, transition
from store.job_status import TERMINAL, TRANSITIONS
from store.model_names import checkpoint_model_name, fine_tuned_model_name, project_slot
from store.models import Job
from store.owned import get_owned
from store.pages import FIRST_PAGE, Cursor, Page, page

__all__ = [
    "MIN_TRAINING_EXAMPLES",
    "TERMINAL",
    "TRANSITIONS",
    "cancel_job",
    "check_transition",
    "checkpoint_model_name",
    "claim_job",
    "create_job",
    "current_status",
    "ensure_can",
    "fail_job",
    "fine_tuned_model_name",
    "get_job",
    "heartbeat",
    "list_jobs",
    "pause_job",
    "project_slot",
    "record_progress",
    "resume_job",
    "set_result",
    "succeed_job",
    "transition",
]


def get_job(session: Session, project_id: str, job_id: str) -> Job:
    """The project's job; NotFoundError when absent or another project's."""
    return get_owned(session, Job, job_id, project_id)


def list_jobs(
    session: Session,
    project_id: str,
    cursor: Cursor = FIRST_PAGE,
    *,
    metadata: Mapping[str, str] | None = None,
    without_metadata: bool = False,
) -> Page[Job]:
    """A page of the project's jobs newest first, filtered by metadata pairs (or by having none)."""
    query = select(Job).where(Job.project_id == project_id)
    if without_metadata:
        query = query.where(Job.meta.is_(None))
    for key, value in (metadata or {}).items():
        check_metadata_key(key, f"metadata[{key[:64]}]")
        query = query.where(Job.meta[key].as_string() == value)
    return page(session, query, Job.id, cursor)


def cancel_job(session: Session, job: Job) -> Job:
    """Cancel now; a running job's training stops at its last recorded step (a `training_stopped`
    event says which; the worker sees the cancel between steps and records no further
    progress); commits."""
    ensure_can(session, job, "cancelled")
    if job.status == "running":
        add_event(
            session,
            job.id,
            f"Training stopped at step {job.step or 0}: the job was cancelled",
            kind=ServiceEvent.TRAINING_STOPPED,
            data={"step": job.step or 0, "reason": "cancelled"},
        )
    transition(session, job, "cancelled", reason="Job cancelled by the user")
    session.commit()
    return job


def pause_job(session: Session, job: Job) -> Job:
    """Pause: the worker checkpoints at the next step boundary and exits; commits."""
    was = job.status
    transition(
        session,
        job,
        "paused",
        reason="Job paused by the user"
        + ("; training stops after the next checkpoint" if was == "running" else ""),
    )
    session.commit()
    return job


def resume_job(session: Session, job: Job) -> Job:
    """Back to queued (the caller re-enqueues after this commit); only a paused job resumes."""
    session.refresh(job)
    if job.status in ("queued", "running"):
        waiting = "waits for a worker" if job.status == "queued" else "is training"
        raise InvalidRequestError(
            f"Job {job.id} is {job.status}, not paused: it {waiting} already, so there is "
            "nothing to resume (only a paused job can be resumed).",
            param="fine_tuning_job_id",
            code="invalid_job_state",
        )
    transition(session, job, "queued", reason="Job resumed; waiting for a worker")
    session.commit()
    return job
