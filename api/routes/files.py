"""Files: upload (streamed, size-limited, validated), list, retrieve, content, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import BlobsDep, CurrentProject, SessionDep, SettingsDep
from api.schemas import FileDeleted, FileObject, ListObject, file_object, page
from api.uploads import receive_upload
from store import files

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.post("", response_model=FileObject)
async def create_file(
    request: Request,
    project: CurrentProject,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
) -> FileObject:
    """Upload a JSONL dataset (`file`, `purpose=fine-tune`); it is validated before replying."""
    file_id, key = files.new_upload()
    blob, upload = await receive_upload(request, blobs, key, settings.max_upload_bytes)
    row = await run_in_threadpool(
        files.register_upload,
        session,
        blobs,
        project.id,
        file_id=file_id,
        blob=blob,
        filename=upload.filename,
        purpose=upload.fields.get("purpose"),
    )
    return file_object(row)


@router.get("", response_model=ListObject)
def list_files(
    project: CurrentProject,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    purpose: str | None = None,
    order: Literal["asc", "desc"] = "desc",
) -> ListObject:
    """The project's files, newest first by default."""
    rows, has_more = files.list_files(
        session, project.id, after=after, limit=limit, purpose=purpose, order=order
    )
    return page([file_object(r) for r in rows], has_more, with_ids=True)


@router.get("/{file_id}", response_model=FileObject)
def retrieve_file(file_id: str, project: CurrentProject, session: SessionDep) -> FileObject:
    """One file."""
    return file_object(files.get_file(session, project.id, file_id))


@router.get("/{file_id}/content")
def file_content(
    file_id: str, project: CurrentProject, session: SessionDep, blobs: BlobsDep
) -> StreamingResponse:
    """The raw bytes of a file."""
    row = files.get_file(session, project.id, file_id)
    return StreamingResponse(
        blobs.iter_range(row.blob_key),
        media_type="application/octet-stream",
        headers={"Content-Length": str(row.bytes)},
    )


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(
    file_id: str, project: CurrentProject, session: SessionDep, blobs: BlobsDep
) -> FileDeleted:
    """Delete a file and its bytes (refused while a live job uses it)."""
    files.delete_file(session, blobs, project.id, file_id)
    return FileDeleted(id=file_id)
