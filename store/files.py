"""Files: uploads validated with the torch-free dataset rules, result files from the worker."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath, PureWindowsPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.blobs import BlobInfo, BlobStore, commit_with_blob, delete_with_blob
from store.errors import InvalidRequestError, NotFoundError
from store.ids import new_id, now_s
from store.models import File, Job
from store.pages import page

logger = logging.getLogger(__name__)

UPLOAD_PURPOSES = ("fine-tune",)
RESULT_PURPOSE = "fine-tune-results"
LIVE_JOB_STATUSES = ("validating_files", "queued", "running", "paused")


def display_name(filename: str | None) -> str:
    """The name shown to users: the last path component, trimmed; never used as a path."""
    name = PureWindowsPath(PurePosixPath(filename or "").name).name.strip()
    return (name or "upload.jsonl")[:512]


def new_upload() -> tuple[str, str]:
    """A fresh file id and the blob key its bytes are streamed to."""
    file_id = new_id("file")
    return file_id, f"files/{file_id}.jsonl"


def check_purpose(purpose: str | None) -> str:
    """The purpose, if uploads may have it; InvalidRequestError naming `purpose` otherwise."""
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequestError(
            f"Invalid purpose {purpose!r}: Quaff accepts uploads with purpose 'fine-tune' only.",
            param="purpose",
        )
    return purpose


def register_upload(
    session: Session,
    blobs: BlobStore,
    project_id: str,
    *,
    file_id: str,
    blob: BlobInfo,
    filename: str | None,
    purpose: str | None,
) -> File:
    """Validate a stored upload and commit its row; on any refusal the blob is deleted."""
    try:
        check_purpose(purpose)
        from quaff_core.data import validate_jsonl

        report = validate_jsonl(blobs.path(blob.key))
        row = File(
            id=file_id,
            project_id=project_id,
            filename=display_name(filename),
            purpose=str(purpose),
            bytes=blob.bytes,
            status="processed" if report.ok else "error",
            status_details=None if report.ok else report.summary(),
            blob_key=blob.key,
            sha256=blob.sha256,
            data_format=report.format,
            n_examples=report.n_examples,
            stats=dict(report.stats),
            created_at=now_s(),
        )
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        blobs.delete(blob.key)
        raise
    return row


def create_result_file(
    session: Session,
    blobs: BlobStore,
    project_id: str,
    *,
    filename: str,
    source: Path | bytes,
    purpose: str = RESULT_PURPOSE,
) -> File:
    """Store a worker output (e.g. the metrics CSV) as a `processed` file; commits."""
    file_id = new_id("file")
    key = f"files/{file_id}{Path(display_name(filename)).suffix[:16]}"
    info = blobs.put(key, source)
    row = File(
        id=file_id,
        project_id=project_id,
        filename=display_name(filename),
        purpose=purpose,
        bytes=info.bytes,
        status="processed",
        status_details=None,
        blob_key=key,
        sha256=info.sha256,
        created_at=now_s(),
    )
    session.add(row)
    commit_with_blob(session, blobs, key)
    return row


def get_file(session: Session, project_id: str, file_id: str, *, param: str | None = None) -> File:
    """The project's file `file_id`; NotFoundError when absent or another project's."""
    row = session.get(File, file_id)
    if row is None or row.project_id != project_id:
        raise NotFoundError("file", file_id, param=param)
    return row


def list_files(
    session: Session,
    project_id: str,
    *,
    after: str | None = None,
    limit: int = 20,
    purpose: str | None = None,
    order: str = "desc",
) -> tuple[list[File], bool]:
    """A page of the project's files (newest first by default); returns (files, has_more)."""
    query = select(File).where(File.project_id == project_id)
    if purpose:
        query = query.where(File.purpose == purpose)
    return page(session, query, File.id, after=after, limit=limit, ascending=order == "asc")


def delete_file(session: Session, blobs: BlobStore, project_id: str, file_id: str) -> None:
    """Delete a file and then its blob; refused while a live job uses it."""
    row = get_file(session, project_id, file_id)
    user = session.scalar(
        select(Job.id).where(
            Job.project_id == project_id,
            Job.status.in_(LIVE_JOB_STATUSES),
            (Job.training_file_id == file_id) | (Job.validation_file_id == file_id),
        )
    )
    if user is not None:
        raise InvalidRequestError(
            f"File {file_id} is used by job {user}, which has not finished; "
            "cancel the job or wait for it to end before deleting the file.",
            param="file_id",
            code="file_in_use",
        )
    delete_with_blob(session, blobs, row)
