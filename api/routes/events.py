"""Job events: newest first with cursor pagination, or `?stream=true` Server-Sent Events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from api.db import DbDep
from api.deps import CurrentProject, SettingsDep
from api.errors import error_response
from api.pages import EventPageDep, list_object
from api.schemas import EventList, event_object
from api.streams import EventHub, StreamCounter, TooManyStreamsError, event_stream
from store import events, jobs

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "With stream=true"}
}


@router.get("/{job_id}/events", response_model=EventList, responses=SSE_RESPONSE)
async def list_events(
    request: Request,
    job_id: str,
    project: CurrentProject,
    db: DbDep,
    settings: SettingsDep,
    cursor: EventPageDep,
    stream: bool = False,
) -> Response:
    """Newest first; with `stream=true`, Server-Sent Events until the job ends (at most
    `max_streams_per_key` streams per key: 429 with `Retry-After` beyond)."""
    if not stream:

        def work(session: Session) -> EventList:
            jobs.get_job(session, project.id, job_id)
            found = events.list_events(session, job_id, cursor)
            return list_object(EventList, found, event_object)

        return await db.respond(work)
    await db.run(lambda s: jobs.get_job(s, project.id, job_id))
    counter: StreamCounter = request.app.state.streams
    try:
        claim = counter.claim(project.key_hash)
    except TooManyStreamsError as exc:
        return error_response(
            429,
            f"Too many event streams: {exc}; close one or poll the event list.",
            code="too_many_streams",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        )
    hub: EventHub = request.app.state.hub
    return StreamingResponse(
        event_stream(hub=hub, settings=settings, job_id=job_id, after=cursor.after, claim=claim),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(claim.release),
    )
