"""Fine-tuning jobs: create (then enqueue), list by metadata, retrieve, cancel, pause, resume."""

from __future__ import annotations

import logging
import re

from fastapi import APIRouter, Request
from fastapi.responses import Response
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.db import DbDep
from api.deps import CurrentProject, QueueDep, SettingsDep
from api.job_body import JobCreate
from api.pages import PageDep, list_object
from api.queue import JobQueue
from api.schemas import JobList, JobObject, job_object
from store import jobs
from store.events import ServiceEvent, add_event
from store.models import Job

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
_METADATA = re.compile(r"^metadata\[(.*)\]$")


def enqueue_after_commit(session: Session, queue: JobQueue, job: Job) -> None:
    """Publish the job's task (its row is already committed); on failure record a warning event."""
    try:
        queue.enqueue(job.id)
    except (OSError, KombuError, SQLAlchemyError) as exc:
        logger.warning("could not enqueue job %s: %s", job.id, exc)
        add_event(
            session,
            job.id,
            f"Could not reach the job queue ({type(exc).__name__}); the job stays queued "
            "and will start when a worker picks it up.",
            level="warn",
            kind=ServiceEvent.QUEUE_UNREACHABLE,
        )
        session.commit()


@router.post("", response_model=JobObject)
async def create_job(
    body: JobCreate, project: CurrentProject, db: DbDep, settings: SettingsDep, queue: QueueDep
) -> Response:
    """Create a job from OpenAI's fields plus `lora`, `quantization`, `training`; then enqueue."""
    request = body.request()

    def work(session: Session) -> JobObject:
        job = jobs.create_job(session, settings, project.id, request)
        enqueue_after_commit(session, queue, job)
        return job_object(job)

    return await db.respond(work)


@router.get("", response_model=JobList)
async def list_jobs(
    request: Request, project: CurrentProject, db: DbDep, cursor: PageDep
) -> Response:
    """The project's jobs, newest first; `metadata[key]=value` filters, `metadata=null` too."""
    metadata = {
        m.group(1): value
        for key, value in request.query_params.multi_items()
        if (m := _METADATA.match(key))
    }
    without = request.query_params.get("metadata") == "null"

    def work(session: Session) -> JobList:
        found = jobs.list_jobs(
            session, project.id, cursor, metadata=metadata, without_metadata=without
        )
        return list_object(JobList, found, job_object)

    return await db.respond(work)


@router.get("/{job_id}", response_model=JobObject)
async def retrieve_job(job_id: str, project: CurrentProject, db: DbDep) -> Response:
    """One job."""
    return await db.respond(lambda s: job_object(jobs.get_job(s, project.id, job_id)))


@router.post("/{job_id}/cancel", response_model=JobObject)
async def cancel_job(job_id: str, project: CurrentProject, db: DbDep) -> Response:
    """Cancel a job that has not finished (400 once it has)."""
    return await db.respond(
        lambda s: job_object(jobs.cancel_job(s, jobs.get_job(s, project.id, job_id)))
    )


@router.post("/{job_id}/pause", response_model=JobObject)
async def pause_job(job_id: str, project: CurrentProject, db: DbDep) -> Response:
    """Pause a queued or running job; training stops at the next step boundary."""
    return await db.respond(
        lambda s: job_object(jobs.pause_job(s, jobs.get_job(s, project.id, job_id)))
    )


@router.post("/{job_id}/resume", response_model=JobObject)
async def resume_job(job_id: str, project: CurrentProject, db: DbDep, queue: QueueDep) -> Response:
    """Resume a paused job: back to queued, enqueued again after the commit."""

    def work(session: Session) -> JobObject:
        job = jobs.resume_job(session, jobs.get_job(session, project.id, job_id))
        enqueue_after_commit(session, queue, job)
        return job_object(job)

    return await db.respond(work)
