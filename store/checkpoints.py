"""Checkpoints: an adapter `.tar.gz` blob saved at a training step, with its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.blobs import BlobStore, commit_with_blob
from store.errors import NotFoundError
from store.ids import new_id, now_s
from store.jobs import checkpoint_model_name
from store.models import Checkpoint, Job
from store.pages import page


def save_checkpoint(
    session: Session,
    blobs: BlobStore,
    job: Job,
    *,
    step: int,
    metrics: dict[str, Any],
    source: Path | bytes,
) -> Checkpoint:
    """Worker: store the archive (blob first), then commit the row."""
    ckpt_id = new_id("ftckpt")
    key = f"checkpoints/{ckpt_id}.tar.gz"
    info = blobs.put(key, source)
    row = Checkpoint(
        id=ckpt_id,
        job_id=job.id,
        step_number=step,
        metrics={"step": step, **metrics},
        fine_tuned_model_checkpoint=checkpoint_model_name(job, step),
        blob_key=key,
        sha256=info.sha256,
        bytes=info.bytes,
        created_at=now_s(),
    )
    session.add(row)
    commit_with_blob(session, blobs, key)
    return row


def list_checkpoints(
    session: Session, job_id: str, *, after: str | None = None, limit: int = 10
) -> tuple[list[Checkpoint], bool]:
    """A page of a job's checkpoints newest first; returns (checkpoints, has_more)."""
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    return page(session, query, Checkpoint.id, after=after, limit=limit)


def latest_checkpoint(session: Session, job_id: str) -> Checkpoint | None:
    """Worker: the checkpoint with the highest step (to resume from)."""
    return session.scalar(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step_number.desc())
        .limit(1)
    )


def get_checkpoint_at_step(session: Session, job_id: str, step: int) -> Checkpoint:
    """The job's checkpoint at `step`; NotFoundError when there is none."""
    row = session.scalar(
        select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step_number == step)
    )
    if row is None:
        raise NotFoundError("checkpoint", f"{job_id} step {step}", param="step")
    return row
