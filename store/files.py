"""Files: uploads validated with the torch-free dataset rules, result files from the worker."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath, PureWindowsPath

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from quaff_core.data.jsonl import ValidationReport, validate_jsonl
from store.blobs import BlobInfo, BlobStore, commit_with_blob, delete_with_blob
from store.errors import DamagedObjectError, InvalidRequestError
from store.ids import new_id, now_s
from store.models import File, Job
from store.owned import get_owned
from store.pages import FIRST_PAGE, Cursor, Page, page

logger = logging.getLogger(__name__)

UPLOAD_PURPOSES = ("fine-tune",)
RESULT_PURPOSE = "fine-tune-results"
LIVE_JOB_STATUSES = ("validating_files", "queued", "running", "paused")
MAX_FILENAME_CHARS = 255
# OpenAI's bounds for `expires_after` (anchor `created_at`): one hour to thirty days.
EXPIRY_SECONDS = (3600, 30 * 24 * 3600)


def display_name(filename: str | None) -> str:
    """The name shown to users: NFC, no control characters or surrogates, the last path
    component, trimmed, at most 255 characters; never used as a path."""
    text = unicodedata.normalize("NFC", (filename or "").encode("utf-8", "replace").decode("utf-8"))
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")
    name = PureWindowsPath(PurePosixPath(text).name).name.strip()
    return (name or "upload.jsonl")[:MAX_FILENAME_CHARS].strip() or "upload.jsonl"


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


def check_expiry(fields: Mapping[str, str]) -> int | None:
    """Seconds until an upload expires, from the form fields `expires_after[anchor]` and
    `expires_after[seconds]` (as the SDK sends them); None when absent; 400 when invalid."""
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError(
            f"Invalid value for 'expires_after.anchor': expected 'created_at', got {anchor!r:.40}",
            param="expires_after.anchor",
        )
    low, high = EXPIRY_SECONDS
    if seconds is None or not seconds.isdigit() or not low <= int(seconds[:12]) <= high:
        raise InvalidRequestError(
            f"Invalid value for 'expires_after.seconds': an integer from {low} to {high}, got "
            f"{seconds!r:.40}",
            param="expires_after.seconds",
        )
    return int(seconds)


def validate_blob(blobs: BlobStore, key: str) -> ValidationReport:
    """Validate a stored upload with the dataset rules (bounded memory; no database)."""
    return validate_jsonl(blobs.path(key))


def register_upload(
    session: Session,
    blobs: BlobStore,
    project_id: str,
    *,
    file_id: str,
    blob: BlobInfo,
    filename: str | None,
    purpose: str | None,
    expires_after: int | None = None,
    report: ValidationReport | None = None,
    pending: bool = False,
) -> File:
    """Validate a stored upload (unless `report` is given, or it is `pending`: status
    `uploaded`, validated later by `finish_validation`) and commit its row; on any refusal or
    failure the blob is deleted."""
    try:
        check_purpose(purpose)
        if report is None and not pending:
            report = validate_blob(blobs, blob.key)
        created = now_s()
        row = File(
            id=file_id,
            project_id=project_id,
            filename=display_name(filename),
            purpose=str(purpose),
            bytes=blob.bytes,
            status="uploaded",
            blob_key=blob.key,
            sha256=blob.sha256,
            created_at=created,
            expires_at=None if expires_after is None else created + expires_after,
        )
        if report is not None:
            _set_report(row, report)
        session.add(row)
        session.commit()
    except BaseException:
        session.rollback()
        blobs.delete(blob.key)
        raise
    return row


def _set_report(row: File, report: ValidationReport) -> None:
    """The validation's outcome on the row: `processed`, or `error` with what is wrong."""
    row.status = "processed" if report.ok else "error"
    row.status_details = None if report.ok else report.summary()
    row.data_format, row.n_examples = report.format, report.n_examples
    row.stats = dict(report.stats)


def finish_validation(
    session_factory: Callable[[], AbstractContextManager[Session]], blobs: BlobStore, file_id: str
) -> str:
    """Validate an `uploaded` file (no session held meanwhile) and store the outcome; returns
    the status it has then (a file deleted or validated meanwhile is left as it is)."""
    with session_factory() as session:
        row = session.get(File, file_id)
        if row is None or row.status != "uploaded":
            return "gone" if row is None else row.status
        key = row.blob_key
    try:
        report = validate_blob(blobs, key)
    except FileNotFoundError:
        return "gone"  # deleted while it was being validated
    with session_factory() as session:
        row = session.get(File, file_id, with_for_update=True)
        if row is None or row.status != "uploaded":
            return "gone" if row is None else row.status
        _set_report(row, report)
        session.commit()
        logger.info("file %s validated after its upload: %s", file_id, row.status)
        return row.status


def pending_uploads(session: Session) -> list[str]:
    """The files still `uploaded` (their validation was cut short, e.g. by a restart)."""
    return list(session.scalars(select(File.id).where(File.status == "uploaded")))


def create_result_file(
    session: Session,
    blobs: BlobStore,
    project_id: str,
    *,
    filename: str,
    source: Path | bytes | None = None,
    shared: BlobInfo | None = None,
    purpose: str = RESULT_PURPOSE,
) -> File:
    """Store a worker output (e.g. the metrics CSV) as a `processed` file; commits. With `shared`
    the file points at that existing blob (the adapter's archive) instead of a copy."""
    file_id = new_id("file")
    if shared is None:
        if source is None:
            raise ValueError("create_result_file needs `source` bytes or a file, or `shared`")
        key = f"files/{file_id}{Path(display_name(filename)).suffix[:16]}"
        info = blobs.put(key, source)
    else:
        info = shared
    row = File(
        id=file_id,
        project_id=project_id,
        filename=display_name(filename),
        purpose=purpose,
        bytes=info.bytes,
        status="processed",
        status_details=None,
        blob_key=info.key,
        sha256=info.sha256,
        created_at=now_s(),
    )
    session.add(row)
    if shared is None:
        commit_with_blob(session, blobs, info.key)
    else:
        session.commit()
    return row


def _unexpired() -> ColumnElement[bool]:
    return or_(File.expires_at.is_(None), File.expires_at > now_s())


def get_file(session: Session, project_id: str, file_id: str, *, param: str | None = None) -> File:
    """The project's file `file_id`; NotFoundError when absent, expired or another project's."""
    return get_owned(session, File, file_id, project_id, param=param, visible=_live)


def _live(row: File) -> bool:
    """Not expired."""
    return row.expires_at is None or row.expires_at > now_s()


def list_files(
    session: Session,
    project_id: str,
    cursor: Cursor = FIRST_PAGE,
    *,
    purpose: str | None = None,
    order: str = "desc",
) -> Page[File]:
    """A page of the project's files (newest first by default)."""
    query = select(File).where(File.project_id == project_id, _unexpired())
    if purpose:
        query = query.where(File.purpose == purpose)
    return page(session, query, File.id, cursor, ascending=order == "asc")


def live_user(session: Session, project_id: str, file_id: str) -> str | None:
    """The id of a job that has not finished and trains on the file, or None."""
    return session.scalar(
        select(Job.id).where(
            Job.project_id == project_id,
            Job.status.in_(LIVE_JOB_STATUSES),
            (Job.training_file_id == file_id) | (Job.validation_file_id == file_id),
        )
    )


def delete_file(session: Session, blobs: BlobStore, project_id: str, file_id: str) -> None:
    """Delete a file and then its blob (unless shared); refused while a live job uses it."""
    row = get_file(session, project_id, file_id)
    user = live_user(session, project_id, file_id)
    if user is not None:
        raise InvalidRequestError(
            f"File {file_id} is used by job {user}, which has not finished; "
            "cancel the job or wait for it to end before deleting the file.",
            param="file_id",
            code="file_in_use",
        )
    delete_with_blob(session, blobs, row)


def mark_damaged(session: Session, file_id: str, reason: str) -> DamagedObjectError:
    """Record that the file's stored bytes are damaged (status `error`, the reason in
    `status_details`, so no job trains on it); commits and returns the error to answer."""
    row = session.get(File, file_id)
    details = f"The stored bytes of this file are damaged ({reason}); delete it, upload it again."
    if row is not None:
        row.status, row.status_details = "error", details
        session.commit()
    logger.error("file %s is damaged: %s", file_id, reason)
    return DamagedObjectError(f"File {file_id}: {details}", code="file_damaged")
