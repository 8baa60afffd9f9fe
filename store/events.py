"""Job events: added by the API and the worker, listed newest first, streamed oldest first.

Every event has a `kind`: a `ServiceEvent` of the service or a `quaff_core.events.EventKind`
of training. Callers react to kinds (and `data`), never to the wording of `message`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from quaff_core.events import EventKind
from store.ids import new_id, now_s
from store.models import JobEvent
from store.pages import page

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
    TRAINING_STOPPED = "training_stopped"
    WORKER_TOOK_OVER = "worker_took_over"
    QUEUE_UNREACHABLE = "queue_unreachable"


KINDS = frozenset(k.value for k in ServiceEvent) | frozenset(k.value for k in EventKind)


def add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    kind: str = ServiceEvent.MESSAGE,
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """Add an event to the session (flushed, not committed)."""
    if level not in LEVELS:
        raise ValueError(f"event level must be one of {LEVELS}, got {level!r}")
    if type not in TYPES:
        raise ValueError(f"event type must be one of {TYPES}, got {type!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; add it to ServiceEvent or EventKind")
    event = JobEvent(
        id=new_id("ftevent"),
        job_id=job_id,
        created_at=now_s(),
        level=level,
        type=type,
        kind=str(kind),
        message=message,
        data=data,
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session, job_id: str, *, after: str | None = None, limit: int = 20
) -> tuple[list[JobEvent], bool]:
    """A page of events newest first, older than the event `after`; returns (events, has_more)."""
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    return page(session, query, JobEvent.id, after=after, limit=limit)


def events_since(session: Session, job_id: str, after: str | None = None) -> Sequence[JobEvent]:
    """Every event newer than `after` (all when None), oldest first: what a stream sends next."""
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if after:
        query = query.where(JobEvent.id > after)
    return list(session.scalars(query.order_by(JobEvent.id)))
