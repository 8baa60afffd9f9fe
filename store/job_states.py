"""The compare-and-set move between job states, checked against the one table in `job_status`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from store.errors import InvalidRequestError
from store.events import ServiceEvent, add_event
from store.ids import now_s
from store.job_status import TERMINAL, TRANSITIONS
from store.models import Job
from store.webhooks import record_job_event


def check_transition(job: Job, new_status: str) -> None:
    """Raise InvalidRequestError unless `job.status -> new_status` is in TRANSITIONS."""
    allowed = TRANSITIONS.get(job.status, frozenset())
    if new_status not in TRANSITIONS:
        raise ValueError(f"unknown job status {new_status!r}; known: {sorted(TRANSITIONS)}")
    if new_status not in allowed:
        options = ", ".join(sorted(allowed)) if allowed else "nothing, it has already finished"
        raise InvalidRequestError(
            f"Job {job.id} is {job.status} and cannot become {new_status} "
            f"(from {job.status} it can become: {options}).",
            param="fine_tuning_job_id",
            code="invalid_job_state",
        )


def ensure_can(session: Session, job: Job, new_status: str) -> None:
    """Check the move against the stored status before writing anything else."""
    session.flush()
    session.refresh(job)
    check_transition(job, new_status)


def transition(
    session: Session,
    job: Job,
    new_status: str,
    *,
    reason: str | None = None,
    level: str = "info",
    notify: bool = True,
) -> Job:
    """Move a job to `new_status` if the table allows it (compare-and-set; flushed, not committed).

    Pending changes to `job` are flushed first; `reason`, when given, is recorded as an event,
    and the webhook deliveries of the new status are queued in the same transaction (unless not
    `notify`: a worker handing its job back passes through `paused` without telling anyone).
    """
    session.flush()
    session.refresh(job)
    check_transition(job, new_status)
    old = job.status
    now = now_s()
    values: dict[str, Any] = {"status": new_status, "updated_at": now}
    if new_status == "running" and job.started_at is None:
        values["started_at"] = now
    if new_status in TERMINAL:
        values["finished_at"] = now
    if new_status in TERMINAL or new_status == "paused":
        values["estimated_finish"] = None
    result = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == old)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.refresh(job)
    if getattr(result, "rowcount", 1) != 1:
        raise InvalidRequestError(
            f"Job {job.id} changed from {old} to {job.status} meanwhile; nothing was done.",
            param="fine_tuning_job_id",
            code="invalid_job_state",
        )
    if notify:
        record_job_event(session, job, new_status)
    if reason:
        add_event(
            session,
            job.id,
            reason,
            level=level,
            kind=ServiceEvent.STATUS,
            data={"status": new_status, "previous": old},
            final=new_status in TERMINAL,
        )
    return job
