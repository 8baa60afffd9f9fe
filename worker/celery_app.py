"""The Celery app, configured from the settings: one explicit queue, long-job ack rules."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from kombu import Queue

from store.db import private_session, private_sqlite_file
from store.queue import FINE_TUNE_QUEUE, FINE_TUNE_TASK
from store.settings import Settings, get_settings
from store.webhook_delivery import WebhookSender
from worker.lease import STOPPING, Sweeper

logger = logging.getLogger(__name__)


def transport_options(broker_url: str, settings: Settings) -> dict[str, Any]:
    """Redis gets `visibility_timeout`; kombu's SQLAlchemy transport passes options to an engine."""
    if broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        return {"visibility_timeout": settings.broker_visibility_timeout}
    return {}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings for long, idempotent, resumable training tasks."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options(settings.broker_url, settings),
        "task_queues": (Queue(FINE_TUNE_QUEUE, routing_key=FINE_TUNE_QUEUE),),
        "task_default_queue": FINE_TUNE_QUEUE,
        "task_routes": {FINE_TUNE_TASK: {"queue": FINE_TUNE_QUEUE}},
        "task_create_missing_queues": False,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "task_track_started": False,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings` with the fine-tuning task registered."""
    private_sqlite_file(settings.broker_url)
    app = Celery("quaff-worker", set_as_current=True)
    app.conf.update(celery_config(settings))
    app.conf.imports = ("worker.tasks",)
    return app


def pin_device(settings: Settings) -> None:
    """Before a pool process imports torch: expose only the configured GPU (none for `cpu`) and
    keep inductor's compiled code under the data directory, so the next job reuses it. With
    `devices` (QUAFF_DEVICES) every listed GPU is exposed: ranks use them in that order."""
    slots = settings.device_slots
    if slots:
        gpus = [slot.split(":", 1)[1] for slot in slots if slot.startswith("cuda:")]
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    elif settings.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif settings.device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = settings.device.split(":", 1)[1]
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(settings.inductor_cache_dir))


def training_threads(settings: Settings) -> int:
    """CPU threads for one training: QUAFF_TRAIN_THREADS, else the host's cores shared out
    between the trainings it runs (QUAFF_TRAININGS_PER_HOST), so they never oversubscribe."""
    if settings.train_threads:
        return settings.train_threads
    return max(1, (os.cpu_count() or 1) // settings.trainings_per_host)


SETTINGS = get_settings()
app = make_celery(SETTINGS)
_sweepers: list[Sweeper | WebhookSender] = []


@worker_init.connect
def _on_worker_init(**_: Any) -> None:
    """Pin the device in the main process, so pool processes inherit it."""
    pin_device(SETTINGS)


@worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    """Set the thread count and import the training stack once per pool process."""
    import torch

    import quaff_core.training.train  # noqa: F401

    torch.set_num_threads(training_threads(SETTINGS))


@worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    """Start the lease sweeper (stale `running` jobs go back on the queue for a live worker) and
    the webhook sender (each pass on a private engine: no connection a pool child inherits)."""
    for thread in (
        Sweeper(SETTINGS, app),
        WebhookSender(SETTINGS, lambda: private_session(SETTINGS)),
    ):
        _sweepers.append(thread)
        thread.start()


@worker_shutting_down.connect
def _on_shutting_down(**_: Any) -> None:
    """Tell the pool process to checkpoint its job at the next step and hand it back."""
    STOPPING.set()


@worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    """Stop the sweeper and sender threads."""
    while _sweepers:
        _sweepers.pop().stop()
