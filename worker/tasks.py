"""The Celery task: a thin edge that takes a job id and runs the pipeline."""

from __future__ import annotations

import logging

from celery.exceptions import Reject

from store.queue import FINE_TUNE_QUEUE, FINE_TUNE_TASK
from worker.celery_app import SETTINGS, app
from worker.lease import STOPPING, worker_identity

logger = logging.getLogger(__name__)


def _publish(job_id: str) -> None:
    """Put a handed-back job on the queue again."""
    run_fine_tune.apply_async(args=[job_id], queue=FINE_TUNE_QUEUE)


@app.task(name=FINE_TUNE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_fine_tune(job_id: str) -> str:
    """Run (or resume) fine-tuning job `job_id`; idempotent, returns what happened."""
    if STOPPING.is_set():
        # A worker that is shutting down takes no new job: the message goes back for another one.
        raise Reject(f"worker is stopping; job {job_id} stays queued", requeue=True)
    from worker.pipeline import run_job  # torch loads in the pool process, not the parent

    outcome = run_job(job_id, SETTINGS, worker_identity(), requeue=_publish)
    logger.info("job %s: %s", job_id, outcome)
    return outcome
