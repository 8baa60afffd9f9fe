"""What a job becomes after training stops: succeeded, paused, cancelled or handed back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

from sqlalchemy.orm import Session

from quaff_core.training.train import TrainResult
from store import jobs
from store.blobs import BlobStore
from store.errors import InvalidRequestError
from store.events import ServiceEvent, add_event
from store.models import Job
from worker.lease import hand_back
from worker.reporting import StoreCallbacks
from worker.results import store_results

logger = logging.getLogger(__name__)

Outcome = Literal["skipped", "succeeded", "failed", "cancelled", "paused", "requeued"]
Requeue = Callable[[str], object]


def after_training(
    session: Session,
    blobs: BlobStore,
    job: Job,
    worker_id: str,
    result: TrainResult,
    callbacks: StoreCallbacks,
    requeue: Requeue | None,
) -> Outcome:
    """Hand a stopping worker's job back, or finish it (store results, or leave it paused)."""
    if result.stopped == "paused" and callbacks.handing_back:
        return _hand_back(session, job, worker_id, result.final_step, requeue)
    return _finish(session, blobs, job, result)


def _hand_back(
    session: Session, job: Job, worker_id: str, step: int, requeue: Requeue | None
) -> Outcome:
    """The worker is stopping: the job (checkpointed at `step`) goes back to the queue."""
    if not hand_back(session, job, worker_id, step):
        return _finish_stopped(session, job, step)
    if requeue is not None:
        requeue(job.id)
    logger.info("job %s handed back at step %d", job.id, step)
    return "requeued"


def _paused_event(session: Session, job: Job, step: int, message: str) -> None:
    """The `training_stopped` event of a pause at `step`."""
    add_event(
        session,
        job.id,
        message,
        kind=ServiceEvent.TRAINING_STOPPED,
        data={"step": step, "reason": "paused"},
    )
    session.commit()


def _finish_stopped(session: Session, job: Job, step: int) -> Outcome:
    """The job left `running` meanwhile (paused or cancelled by the user): leave it so."""
    status = jobs.current_status(session, job)
    logger.info("job %s stopped at step %d (%s)", job.id, step, status)
    if status != "paused":
        return "cancelled"
    _paused_event(session, job, step, f"Training paused at step {step}; resume the job to continue")
    return "paused"


def _finish(session: Session, blobs: BlobStore, job: Job, result: TrainResult) -> Outcome:
    """Leave a paused or cancelled job as it is; store a completed one's results and succeed it."""
    if result.stopped == "paused":
        message = (
            f"Training paused at step {result.final_step}/{result.total_steps}; resume the job "
            "to continue from its last checkpoint"
        )
        _paused_event(session, job, result.final_step, message)
        return "paused"
    if result.stopped == "cancelled":
        # "Job cancelled" (written by the cancel) stays the job's last event; the log says more.
        status = jobs.current_status(session, job)
        logger.info("job %s stopped at step %d (%s)", job.id, result.final_step, status)
        return "cancelled"
    store_results(session, blobs, job, result)
    try:
        jobs.succeed_job(session, job)
    except InvalidRequestError:
        session.rollback()
        logger.info("job %s finished training but is now %s", job.id, job.status)
        return "cancelled"
    return "succeeded"
