"""Files: upload (streamed, size-limited, validated), list, retrieve, content, delete."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import anyio
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.db import Db, DbDep
from api.deps import BlobsDep, CurrentProject, GateDep, SettingsDep
from api.gate import ServiceBusyError
from api.pages import FilePageDep, list_object
from api.schemas import FileDeleted, FileList, FileObject, file_object
from api.upload_form import UPLOAD_OPENAPI
from api.uploads import Upload, receive_upload
from store import files
from store.blobs import BlobDamagedError, BlobInfo, BlobStore
from store.models import File

router = APIRouter(prefix="/v1/files", tags=["files"])


def _register(
    factory: sessionmaker[Session],
    blobs: BlobStore,
    project_id: str,
    file_id: str,
    blob: BlobInfo,
    upload: Upload,
    expires_after: int | None,
    pending: bool,
) -> File:
    """Validate the stored upload (no session held meanwhile; not yet when `pending`), then
    commit its row."""
    report = None if pending else files.validate_blob(blobs, blob.key)
    with factory() as session:
        return files.register_upload(
            session, blobs, project_id, file_id=file_id, blob=blob, filename=upload.filename,
            purpose=upload.fields.get("purpose"), expires_after=expires_after, report=report,
            pending=pending,
        )  # fmt: skip


@router.post("", response_model=FileObject, openapi_extra=UPLOAD_OPENAPI)
async def create_file(
    request: Request,
    project: CurrentProject,
    gate: GateDep,
    blobs: BlobsDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> FileObject:
    """Upload a JSONL dataset (`file`, `purpose=fine-tune`, optional `expires_after`). Up to
    `inline_validation_bytes` it is validated before replying; a larger one replies `uploaded`
    and is validated after the reply. No database session is held while the bytes arrive."""
    file_id, key = files.new_upload()
    blob, upload = await receive_upload(request, blobs, key, settings.max_upload_bytes)
    try:
        files.check_purpose(upload.fields.get("purpose"))
        expires_after = files.check_expiry(upload.fields)
    except BaseException:
        await run_in_threadpool(blobs.delete, key)
        raise
    factory = request.app.state.session_factory
    pending = blob.bytes > settings.inline_validation_bytes
    with anyio.CancelScope(shield=True):  # the row and the blob are settled together
        try:
            row = await gate.run(
                _register, factory, blobs, project.id, file_id, blob, upload, expires_after,
                pending,
            )  # fmt: skip
        except ServiceBusyError:
            await run_in_threadpool(blobs.delete, key)
            raise
    if pending:
        background.add_task(files.finish_validation, factory, blobs, file_id)
    return file_object(row)


@router.get("", response_model=FileList)
async def list_files(
    project: CurrentProject,
    db: DbDep,
    cursor: FilePageDep,
    purpose: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> Response:
    """The project's files, newest first by default (expired ones are gone)."""

    def work(session: Session) -> FileList:
        found = files.list_files(session, project.id, cursor, purpose=purpose, order=order)
        return list_object(FileList, found, file_object)

    return await db.respond(work)


@router.get("/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, project: CurrentProject, db: DbDep) -> Response:
    """One file."""
    return await db.respond(lambda s: file_object(files.get_file(s, project.id, file_id)))


def _first_chunk(blobs: BlobStore, row: File) -> tuple[Iterator[bytes], bytes | None]:
    """The file's verified chunks and the first one, read now: a file of one chunk is checked
    whole before the reply starts, a larger one before its last chunk is sent."""
    chunks = blobs.iter_verified(row.blob_key, row.bytes, row.sha256)
    return chunks, next(chunks, None)


def _rest(
    first: bytes | None, chunks: Iterator[bytes], on_damage: Callable[[str], object]
) -> Iterator[bytes]:
    """`first` then the other chunks; damage found on the way is recorded, then the stream aborts
    short of its Content-Length, so no client takes the bytes for the whole file."""
    if first is not None:
        yield first
    try:
        yield from chunks
    except BlobDamagedError as exc:
        on_damage(exc.reason)
        raise


def _damaged(db: Db, file_id: str) -> Callable[[str], object]:
    return lambda reason: db.run_here(lambda s: files.mark_damaged(s, file_id, reason))


@router.get(
    "/{file_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def file_content(
    file_id: str, project: CurrentProject, db: DbDep, blobs: BlobsDep
) -> StreamingResponse:
    """The raw bytes of a file, checked against the recorded size and sha256 as they are read
    (a damaged file answers an error and is marked `error`)."""
    row = await db.run(lambda s: files.get_file(s, project.id, file_id))
    try:
        chunks, first = await run_in_threadpool(_first_chunk, blobs, row)
    except BlobDamagedError as exc:
        reason = exc.reason
        raise await db.run(lambda s: files.mark_damaged(s, row.id, reason)) from None
    return StreamingResponse(
        _rest(first, chunks, _damaged(db, row.id)),
        media_type="application/octet-stream",
        headers={"Content-Length": str(row.bytes)},
    )


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(
    file_id: str, project: CurrentProject, db: DbDep, blobs: BlobsDep
) -> Response:
    """Delete a file and its bytes (refused while a live job uses it)."""

    def work(session: Session) -> FileDeleted:
        files.delete_file(session, blobs, project.id, file_id)
        return FileDeleted(id=file_id)

    return await db.respond(work)
