"""Checkpoints: an adapter `.tar.gz` blob saved at a training step, with its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.blobs import BlobStore, commit_with_blob, delete_unreferenced
from store.errors import NotFoundError
from store.ids import new_id, now_s
from store.model_names import checkpoint_model_name
from store.models import Checkpoint, Job
from store.pages import Cursor, Page, page

FIRST_CHECKPOINTS = Cursor(limit=10)


def save_checkpoint(
    session: Session,
    blobs: BlobStore,
    job: Job,
    *,
    step: int,
    metrics: dict[str, Any],
    source: Path | bytes,
    safety: bool = False,
) -> Checkpoint:
    """Worker: store the archive (blob first), then commit the row. A `safety` checkpoint (taken
    by the worker, not asked for by the job) replaces the job's older safety checkpoints."""
    ckpt_id = new_id("ftckpt")
    key = f"checkpoints/{ckpt_id}.tar.gz"
    info = blobs.put(key, source)
    row = Checkpoint(
        id=ckpt_id,
        job_id=job.id,
        step_number=step,
        metrics={"step": step, **metrics},
        safety=safety,
        fine_tuned_model_checkpoint=checkpoint_model_name(job, step),
        blob_key=key,
        sha256=info.sha256,
        bytes=info.bytes,
        created_at=now_s(),
    )
    session.add(row)
    commit_with_blob(session, blobs, key)
    if safety:
        prune_safety_checkpoints(session, blobs, job.id, keep=row.id)
    return row


def prune_safety_checkpoints(
    session: Session, blobs: BlobStore, job_id: str, *, keep: str | None = None
) -> list[int]:
    """Delete the job's safety checkpoints but `keep` (rows, then blobs); returns their steps."""
    query = select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.safety.is_(True))
    if keep is not None:
        query = query.where(Checkpoint.id != keep)
    rows = list(session.scalars(query))
    keys = [r.blob_key for r in rows]
    steps = [r.step_number for r in rows]
    for row in rows:
        session.delete(row)
    session.commit()
    delete_unreferenced(session, blobs, keys)
    return steps


def list_checkpoints(
    session: Session, job_id: str, cursor: Cursor = FIRST_CHECKPOINTS
) -> Page[Checkpoint]:
    """A page of a job's checkpoints newest first."""
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    return page(session, query, Checkpoint.id, cursor)


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
