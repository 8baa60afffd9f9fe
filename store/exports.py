"""Exports: one per job, adapter checksum and format, built once by a node and then served.

Formats: `merged` (a transformers directory), `gguf_f16` and `gguf_q8_0` (that merged model as
one GGUF file plus an Ollama Modelfile), `gguf_lora` (the adapter as a GGUF LoRA).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import infer_nodes
from store.blobs import BlobStore, commit_with_blob
from store.ids import new_id, now_s
from store.models import MergedExport

FORMATS = ("merged", "gguf_f16", "gguf_q8_0", "gguf_lora")


def find_export(
    session: Session, job_id: str, source_sha256: str, fmt: str = "merged"
) -> MergedExport | None:
    """The export in `fmt` of this job's adapter with that checksum, if one was asked for."""
    return session.scalar(
        select(MergedExport).where(
            MergedExport.job_id == job_id,
            MergedExport.source_sha256 == source_sha256,
            MergedExport.format == fmt,
        )
    )


def needs_build(session: Session, row: MergedExport | None, lease_seconds: float) -> bool:
    """No export yet, or one whose building node stopped."""
    if row is None:
        return True
    return row.status == "building" and not infer_nodes.is_live(session, row.node_id, lease_seconds)


def begin_export(
    session: Session,
    row: MergedExport | None,
    *,
    job_id: str,
    step: int | None,
    source_sha256: str,
    node_id: str,
    fmt: str = "merged",
) -> MergedExport:
    """Mark the export building on `node_id` (a new row, or the stale one taken over)."""
    if row is None:
        row = MergedExport(
            id=new_id("ftexport"), job_id=job_id, step=step, source_sha256=source_sha256,
            format=fmt, created_at=now_s(), status="building",
        )  # fmt: skip
        session.add(row)
    row.status, row.node_id, row.error_message = "building", node_id, None
    session.commit()
    return row


def finish_export(
    session: Session, blobs: BlobStore, row: MergedExport, archive: Path, verification: dict
) -> None:
    """Node: store the archive (blob first), then the row."""
    key = f"exports/{row.id}.tar.gz"
    info = blobs.put(key, archive)
    row.status, row.blob_key, row.sha256, row.bytes = "succeeded", key, info.sha256, info.bytes
    row.verification, row.finished_at = verification, now_s()
    commit_with_blob(session, blobs, key)


def fail_export(
    session: Session, row: MergedExport, message: str, verification: dict[str, Any] | None
) -> None:
    """Node: the export failed (e.g. its check); the message says by how much."""
    row.status, row.error_message, row.verification = "failed", message, verification
    row.finished_at = now_s()
    session.commit()
