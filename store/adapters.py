"""Adapters: a succeeded job's PEFT adapter `.tar.gz`; each one is a fine-tuned model."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.blobs import BlobStore, commit_with_blob, delete_unreferenced
from store.errors import NotFoundError
from store.ids import new_id, now_s
from store.model_names import fine_tuned_model_name
from store.models import Adapter, Checkpoint, File, Job, MergedExport


def save_adapter(session: Session, blobs: BlobStore, job: Job, source: Path | bytes) -> Adapter:
    """Worker: store the archive (blob first), commit the row and name the job's model."""
    adapter_id = new_id("adapter")
    key = f"adapters/{adapter_id}.tar.gz"
    info = blobs.put(key, source)
    name = fine_tuned_model_name(job)
    row = Adapter(
        id=adapter_id,
        job_id=job.id,
        project_id=job.project_id,
        fine_tuned_model=name,
        base_model=job.model,
        blob_key=key,
        sha256=info.sha256,
        bytes=info.bytes,
        created_at=now_s(),
    )
    session.add(row)
    job.fine_tuned_model = name
    commit_with_blob(session, blobs, key)
    return row


def adapter_for_job(session: Session, job_id: str) -> Adapter | None:
    """The job's final adapter, if it has one."""
    return session.scalar(select(Adapter).where(Adapter.job_id == job_id))


def get_job_adapter(session: Session, job_id: str) -> Adapter:
    """The job's final adapter; NotFoundError while it has none."""
    row = adapter_for_job(session, job_id)
    if row is None:
        raise NotFoundError("adapter for job", job_id)
    return row


def list_adapters(session: Session, project_id: str) -> list[Adapter]:
    """The project's fine-tuned models, oldest first."""
    query = select(Adapter).where(Adapter.project_id == project_id).order_by(Adapter.id)
    return list(session.scalars(query))


def get_adapter_by_model(session: Session, project_id: str, model: str) -> Adapter:
    """The project's adapter named `model`; NotFoundError otherwise."""
    row = session.scalar(
        select(Adapter).where(Adapter.project_id == project_id, Adapter.fine_tuned_model == model)
    )
    if row is None:
        raise NotFoundError("model", model, param="model")
    return row


def delete_adapter(session: Session, blobs: BlobStore, row: Adapter) -> list[str]:
    """Delete the fine-tuned model and every copy of its weights: the adapter, the result file
    that shares its archive, the job's checkpoints (each a `...:ckpt-step-N` model) and the
    exports built from them; rows first, then the blobs no row points at any more. The job and
    its metrics file stay. Returns the removed blob keys."""
    job = session.get(Job, row.job_id)
    copies = list(session.scalars(select(File).where(File.blob_key == row.blob_key)))
    checkpoints = list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == row.job_id)))
    built = list(session.scalars(select(MergedExport).where(MergedExport.job_id == row.job_id)))
    keys = [row.blob_key, *(c.blob_key for c in checkpoints)]
    keys += [e.blob_key for e in built if e.blob_key is not None]
    if job is not None and copies:
        gone = {f.id for f in copies}
        job.result_files = [f for f in job.result_files or [] if f not in gone]
    for item in [row, *copies, *checkpoints, *built]:
        session.delete(item)
    session.commit()
    return delete_unreferenced(session, blobs, keys)
