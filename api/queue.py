"""The Celery producer: the API only sends tasks by name, it never imports the worker."""

from __future__ import annotations

import logging

from celery import Celery
from kombu import Queue

from store.db import private_sqlite_file
from store.queue import FINE_TUNE_QUEUE, FINE_TUNE_TASK

logger = logging.getLogger(__name__)


class JobQueue:
    """Publishes fine-tuning tasks to the broker in the settings."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        private_sqlite_file(broker_url)
        self.celery = Celery("quaff-api", broker=broker_url, set_as_current=False)
        self.celery.conf.update(
            task_queues=(Queue(FINE_TUNE_QUEUE, routing_key=FINE_TUNE_QUEUE),),
            task_create_missing_queues=False,
            broker_connection_timeout=3,
            broker_connection_retry_on_startup=False,
            task_publish_retry=True,
            task_publish_retry_policy={
                "max_retries": 2,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )

    def enqueue(self, job_id: str) -> str:
        """Send `FINE_TUNE_TASK(job_id)` to `FINE_TUNE_QUEUE`; returns the task id."""
        result = self.celery.send_task(FINE_TUNE_TASK, args=[job_id], queue=FINE_TUNE_QUEUE)
        logger.info("enqueued %s for job %s (task %s)", FINE_TUNE_TASK, job_id, result.id)
        return str(result.id)

    def check(self) -> None:
        """Raise if the broker cannot be reached."""
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
