"""The Celery task: a thin edge that takes a job id and runs the pipeline."""

from __future__ import annotations

import logging

from store.queue import FINE_TUNE_TASK
from worker.celery_app import SETTINGS, app
from worker.lease import worker_identity
from worker.pipeline import run_job

logger = logging.getLogger(__name__)


@app.task(name=FINE_TUNE_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_fine_tune(job_id: str) -> str:
    """Run (or resume) fine-tuning job `job_id`; idempotent, returns what happened."""
    outcome = run_job(job_id, SETTINGS, worker_identity())
    logger.info("job %s: %s", job_id, outcome)
    return outcome
