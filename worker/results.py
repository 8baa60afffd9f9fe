"""Persist a finished run (adapter archive, metrics CSV, adapter row); unpack checkpoints."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from quaff_core.training.train import TrainResult
from store import jobs
from store.adapters import adapter_for_job, save_adapter
from store.blobs import BlobInfo, BlobStore
from store.checkpoints import prune_safety_checkpoints
from store.files import create_result_file
from store.models import Checkpoint, Job
from worker.artifacts import metrics_csv, pack_dir, unpack

logger = logging.getLogger(__name__)


def resume_dir(blobs: BlobStore, checkpoint: Checkpoint, target: Path) -> Path:
    """Unpack a stored checkpoint archive into `target` (a worker-local directory)."""
    return unpack(blobs.path(checkpoint.blob_key), target)


def store_results(session: Session, blobs: BlobStore, job: Job, result: TrainResult) -> None:
    """Adapter row + `fine_tuned_model`, then the adapter and metrics as result files."""
    if result.adapter_dir is None:
        raise ValueError(f"job {job.id}: a completed run must have an adapter directory")
    short = job.id.removeprefix("ftjob-")
    adapter = adapter_for_job(session, job.id)
    if adapter is None:
        with tempfile.TemporaryDirectory(prefix="quaff-adapter-") as tmp:
            archive = pack_dir(result.adapter_dir, Path(tmp) / "adapter.tar.gz")
            adapter = save_adapter(session, blobs, job, archive)
    adapter_file = create_result_file(  # the adapter's own archive, stored once
        session,
        blobs,
        job.project_id,
        filename=f"adapter-{short}.tar.gz",
        shared=BlobInfo(key=adapter.blob_key, bytes=adapter.bytes, sha256=adapter.sha256),
    )
    csv_file = create_result_file(
        session,
        blobs,
        job.project_id,
        filename=f"step_metrics-{short}.csv",
        source=metrics_csv(result.metrics),
    )
    jobs.set_result(
        session,
        job,
        trained_tokens=result.trained_tokens,
        result_files=[csv_file.id, adapter_file.id],
    )
    session.commit()
    dropped = prune_safety_checkpoints(session, blobs, job.id)
    if dropped:
        logger.info("job %s: dropped safety checkpoints at steps %s", job.id, dropped)
