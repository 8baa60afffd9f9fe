"""Job events: newest first with cursor pagination, or `?stream=true` Server-Sent Events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from api.deps import CurrentProject, SessionDep, SettingsDep
from api.schemas import ListObject, event_object, page
from store import events, jobs
from store.models import Job

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def sse_stream(
    factory: sessionmaker[Session], job_id: str, after: str | None, poll_seconds: float
) -> Iterator[bytes]:
    """Yield `data: {event}` oldest first from `after`; stop once the job is terminal and drained.

    The terminal transition always records an event, so the last one sent says how the job ended.
    """
    cursor = after
    while True:
        with factory() as session:
            job = session.get(Job, job_id)
            finished = job is None or job.status in jobs.TERMINAL
            for row in events.events_since(session, job_id, cursor):
                cursor = row.id
                yield f"data: {event_object(row).model_dump_json()}\n\n".encode()
        if finished:
            return
        time.sleep(poll_seconds)


@router.get("/{job_id}/events", response_model=None)
def list_events(
    request: Request,
    job_id: str,
    project: CurrentProject,
    session: SessionDep,
    settings: SettingsDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    stream: bool = False,
) -> ListObject | StreamingResponse:
    """Newest first; with `stream=true`, Server-Sent Events until the job ends."""
    jobs.get_job(session, project.id, job_id)
    if stream:
        factory = request.app.state.session_factory
        return StreamingResponse(
            sse_stream(factory, job_id, after, settings.event_poll_seconds),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    rows, has_more = events.list_events(session, job_id, after=after, limit=limit)
    return page([event_object(r) for r in rows], has_more)
