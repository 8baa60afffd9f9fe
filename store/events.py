"""Job events: added by the API and the worker, listed newest first, streamed oldest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.ids import new_id, now_s
from store.models import JobEvent
from store.pages import page

LEVELS = ("info", "warn", "error")
TYPES = ("message", "metrics")


def add_event(
    session: Session,
    job_id: str,
    message: str,
    *,
    level: str = "info",
    type: str = "message",
    data: dict[str, Any] | None = None,
) -> JobEvent:
    """Add an event to the session (flushed, not committed)."""
    if level not in LEVELS:
        raise ValueError(f"event level must be one of {LEVELS}, got {level!r}")
    if type not in TYPES:
        raise ValueError(f"event type must be one of {TYPES}, got {type!r}")
    event = JobEvent(
        id=new_id("ftevent"),
        job_id=job_id,
        created_at=now_s(),
        level=level,
        type=type,
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
