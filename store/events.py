"""Job events: added by the API and the worker, listed newest first, streamed oldest first.

Every event has a `kind`: a `ServiceEvent` of the service or a `quaff_core.train_events.EventKind`
of training. Callers react to kinds (and `data`), never to the wording of `message`.

Two rules hold for every job: its terminal event is its last (an event for a job that has ended is
dropped: the insert first takes the job's row lock, so it orders after a concurrent cancel), and
it has one metrics event per step (a re-trained or evaluated step replaces the earlier one).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from quaff_core.train_events import EventKind
from store.ids import new_id, now_s
from store.job_status import TERMINAL
from store.models import Job, JobEvent
from store.pages import FIRST_PAGE, Cursor, Page, page

logger = logging.getLogger(__name__)

LEVELS = ("info", "warn", "error")
TYPES = ("message", "metrics")


class ServiceEvent(StrEnum):
    """Kinds of the events the service writes itself."""

    MESSAGE = "message"
    METRICS = "metrics"
    JOB_CREATED = "job_created"
    FILES_VALIDATING = "files_validating"
    STATUS = "status"
    JOB_STARTED = "job_started"
    RESUMING = "resuming"
    OUTLIER_MAP_STORED = "outlier_map_stored"
    WARM_BASE = "warm_base"
    TRAINING_STOPPED = "training_stopped"
    WORKER_TOOK_OVER = "worker_took_over"
    QUEUE_UNREACHABLE = "queue_unreachable"


KINDS = frozenset(k.value for k in ServiceEvent) | frozenset(k.value for k in EventKind)


def lock_live_job(session: Session, job_id: str) -> bool:
    """Take the job's row lock if it has not ended (a no-op update); False once it has ended."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.not_in(TERMINAL))
        .values(updated_at=Job.updated_at)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1


def _metrics_step(type: str, data: dict[str, Any] | None) -> int | None:
    step = (data or {}).get("step") if type == "metrics" else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    kind: str = ServiceEvent.MESSAGE,
    data: dict[str, Any] | None = None,
    final: bool = False,
) -> JobEvent | None:
    """Add an event to the session (flushed, not committed); None when the job has ended.

    `final` marks the terminal transition's own event, written after the status changed.
    """
    if level not in LEVELS:
        raise ValueError(f"event level must be one of {LEVELS}, got {level!r}")
    if type not in TYPES:
        raise ValueError(f"event type must be one of {TYPES}, got {type!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; add it to ServiceEvent or EventKind")
    if not final and not lock_live_job(session, job_id):
        logger.info("job %s has ended; dropping its event %r", job_id, message[:80])
        return None
    step = _metrics_step(type, data)
    if step is not None:
        session.execute(delete(JobEvent).where(JobEvent.job_id == job_id, JobEvent.step == step))
    event = JobEvent(
        id=new_id("ftevent"),
        job_id=job_id,
        created_at=now_s(),
        level=level,
        type=type,
        kind=str(kind),
        message=message,
        data=data,
        step=step,
    )
    session.add(event)
    session.flush()
    return event


def discard_metrics_after(session: Session, job_id: str, step: int) -> int:
    """Delete the metrics events past `step` (lost with a crashed attempt); returns how many."""
    result = session.execute(
        delete(JobEvent).where(JobEvent.job_id == job_id, JobEvent.step > step)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def list_events(session: Session, job_id: str, cursor: Cursor = FIRST_PAGE) -> Page[JobEvent]:
    """A page of events newest first, older than the event `cursor.after`."""
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    return page(session, query, JobEvent.id, cursor)


def events_since(
    session: Session, job_id: str, after: str | None = None, *, limit: int | None = None
) -> Sequence[JobEvent]:
    """Events newer than `after` (all when None), oldest first, at most `limit`: what a stream
    sends next."""
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if after:
        query = query.where(JobEvent.id > after)
    return list(session.scalars(query.order_by(JobEvent.id).limit(limit)))
