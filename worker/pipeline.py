"""Run one fine-tuning job: claim, validate, train on one device or a group, persist results."""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
from pathlib import Path

import torch
from sqlalchemy.orm import Session

from quaff_core.training.runtime import resolve_runtime
from quaff_core.training.train import TrainResult
from store import jobs
from store.blobs import BlobStore
from store.db import session_scope
from store.errors import InvalidRequestError
from store.events import ServiceEvent, add_event
from store.models import Job
from store.settings import Settings
from worker.group import check_devices, rank_spec, train_group
from worker.job_run import TOKENIZER_DIR, JobRun, open_run
from worker.lease import Heartbeat, acquire
from worker.options import JobFailure, train_config
from worker.outcomes import Outcome, Requeue, after_training
from worker.single import (
    ColdBase,
    job_data,
    job_map,
    out_of_memory_error,
    resolve_device,
    train_single,
)

logger = logging.getLogger(__name__)

__all__ = ["Outcome", "out_of_memory_error", "run_job"]


def run_job(
    job_id: str, settings: Settings, worker_id: str, requeue: Requeue | None = None
) -> Outcome:
    """Run a queued or abandoned job (`requeue` re-publishes one handed back); else leave it."""
    blobs = BlobStore(settings.blob_dir)
    with session_scope(settings) as session:
        job = acquire(session, job_id, worker_id, settings)
        if job is None:
            return "skipped"
        heartbeat = Heartbeat(settings, job_id, worker_id)
        heartbeat.start()
        try:
            return _run_claimed(session, blobs, settings, job, worker_id, heartbeat.lost, requeue)
        except JobFailure as failure:
            return _fail(session, job, failure)
        except MemoryError as exc:
            logger.warning("job %s ran out of memory: %s", job.id, exc)
            return _fail(session, job, out_of_memory_error(job, "cpu"))
        except Exception as exc:  # the job must end `failed`, whatever broke
            logger.exception("job %s crashed", job_id)
            message = (
                f"Internal error while training ({type(exc).__name__}: {exc}); please retry "
                "the job."
            )
            return _fail(session, job, JobFailure("internal_error", message))
        finally:
            heartbeat.stop()
            _release_memory()


def _fail(session: Session, job: Job, failure: JobFailure) -> Outcome:
    """Mark the job failed, unless it was cancelled or taken over meanwhile; stored rows stay."""
    session.rollback()
    try:
        jobs.fail_job(session, job, failure.code, failure.message, failure.param)
    except InvalidRequestError:
        session.rollback()
        logger.info("job %s is %s; not marking it failed (%s)", job.id, job.status, failure)
        return "cancelled" if job.status == "cancelled" else "skipped"
    logger.info("job %s failed: %s %s", job.id, failure.code, failure.message)
    return "failed"


def _release_memory() -> None:
    """Free the job's tensors between jobs (the pool process lives on)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_on_group(run: JobRun) -> TrainResult:
    """Train over several devices: the map is resolved here (loading the base only for that),
    the ranks load their own copies."""
    device = resolve_device(run.settings)
    cold = ColdBase(run, device, resolve_runtime(run.config, device))
    tokenizer = cold.pair()[1]
    tokenizer.save_pretrained(str(run.work / TOKENIZER_DIR))
    dataset = lambda: job_data(run, tokenizer).train_set  # noqa: E731
    outlier_map = job_map(run, cold.calibration_model, tokenizer, dataset)
    cold.loaded = None
    _release_memory()
    spec = rank_spec(
        run.job,
        blobs=run.blobs,
        train_file=run.train_file,
        valid_file=run.valid_file,
        outlier_map=outlier_map,
        resume=run.resume,
        work=run.work,
    )
    return train_group(
        run.session,
        run.blobs,
        run.job,
        run.settings,
        spec=spec,
        callbacks=run.callbacks,
        work=run.work,
    )


def _run_claimed(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    job: Job,
    worker_id: str,
    lease_lost: threading.Event,
    requeue: Requeue | None,
) -> Outcome:
    """Everything after the claim; JobFailure for problems the user can fix."""
    add_event(
        session,
        job.id,
        f"Fine-tuning job started (attempt {job.attempts})",
        kind=ServiceEvent.JOB_STARTED,
        data={"attempt": job.attempts},
    )
    session.commit()
    config = train_config(job)
    check_devices(settings, config.devices)
    with tempfile.TemporaryDirectory(prefix=f"quaff-{job.id}-") as tmp:
        run = open_run(session, blobs, settings, job, config, Path(tmp), lease_lost)
        result = _train_on_group(run) if config.devices > 1 else train_single(run)
        return after_training(session, blobs, job, worker_id, result, run.callbacks, requeue)
