"""One claimed job's fixed inputs, gathered once: files, config, work dir, resume and start."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from quaff_core.data.jsonl import validate_jsonl
from quaff_core.options.train_config import TrainConfig
from store import jobs
from store.blobs import BlobStore
from store.checkpoints import latest_checkpoint
from store.events import ServiceEvent, add_event, discard_metrics_after
from store.model_refs import tuned_model
from store.models import File, Job
from store.settings import Settings
from worker.artifacts import unpack
from worker.options import JobFailure
from worker.reporting import StoreCallbacks
from worker.results import resume_dir

TOKENIZER_DIR = "tokenizer"  # under the work dir: saved with every checkpoint


@dataclass
class JobRun:
    """What every step of a claimed job reads; built by `open_run`."""

    session: Session
    blobs: BlobStore
    settings: Settings
    job: Job
    config: TrainConfig
    train_file: File
    valid_file: File | None
    work: Path
    resume: Path | None
    start: Path | None
    callbacks: StoreCallbacks

    def path(self, row: File) -> Path:
        """Where a dataset's blob lies."""
        return self.blobs.path(row.blob_key)


def job_file(session: Session, blobs: BlobStore, job: Job, file_id: str, param: str) -> File:
    """Re-validate a job's dataset from its blob; JobFailure naming the file and the line."""
    row = session.get(File, file_id)
    if row is None or not blobs.exists(row.blob_key):
        raise JobFailure("invalid_file", f"File {file_id} no longer exists.", param)
    report = validate_jsonl(blobs.path(row.blob_key))
    if not report.ok:
        raise JobFailure("invalid_file", f"File {file_id}: {report.summary()}", param)
    if param == "training_file" and report.n_examples < jobs.MIN_TRAINING_EXAMPLES:
        raise JobFailure(
            "invalid_n_examples",
            f"Training file {file_id} has {report.n_examples} example(s); a job needs at least "
            f"{jobs.MIN_TRAINING_EXAMPLES}.",
            param,
        )
    return row


def start_dir(session: Session, blobs: BlobStore, job: Job, target: Path) -> Path | None:
    """The adapter a continued job starts from, unpacked into `target` (None: a fresh start)."""
    if not job.continued_from:
        return None
    ref = tuned_model(session, job.project_id, job.continued_from)
    if ref is None or ref.blob_key is None or not blobs.exists(ref.blob_key):
        raise JobFailure(
            "model_not_found",
            f"The model {job.continued_from} this job continues from no longer exists.",
            "model",
        )
    return unpack(blobs.path(ref.blob_key), target)


def _resume(session: Session, blobs: BlobStore, job: Job, target: Path) -> Path | None:
    """The job's last checkpoint unpacked (metrics after it discarded, said in an event)."""
    checkpoint = latest_checkpoint(session, job.id)
    if checkpoint is None:
        return None
    resume = resume_dir(blobs, checkpoint, target)
    discard_metrics_after(session, job.id, checkpoint.step_number)
    add_event(
        session,
        job.id,
        f"Resuming from checkpoint at step {checkpoint.step_number} ({checkpoint.id})",
        kind=ServiceEvent.RESUMING,
        data={"step": checkpoint.step_number, "checkpoint": checkpoint.id},
    )
    session.commit()
    return resume


def open_run(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    job: Job,
    config: TrainConfig,
    work: Path,
    lease_lost: threading.Event,
) -> JobRun:
    """Validate the job's files, unpack its resume checkpoint and start adapter into `work`."""
    train_file = job_file(session, blobs, job, job.training_file_id, "training_file")
    valid_file = (
        job_file(session, blobs, job, job.validation_file_id, "validation_file")
        if job.validation_file_id
        else None
    )
    callbacks = StoreCallbacks(
        session,
        blobs,
        job,
        lease_lost=lease_lost,
        extra_files=work / TOKENIZER_DIR,
        safety_checkpoint_seconds=settings.safety_checkpoint_seconds,
        save_every=config.save_every,
    )
    return JobRun(
        session=session,
        blobs=blobs,
        settings=settings,
        job=job,
        config=config,
        train_file=train_file,
        valid_file=valid_file,
        work=work,
        resume=_resume(session, blobs, job, work / "resume"),
        start=start_dir(session, blobs, job, work / "start"),
        callbacks=callbacks,
    )
