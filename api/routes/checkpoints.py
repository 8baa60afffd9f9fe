"""Checkpoints of a job, and the adapter download (final or at a step) with HTTP Range."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from api.deps import CurrentProject, SessionDep
from api.errors import error_response
from api.routes.exports import merged_export
from api.schemas import ListObject, checkpoint_object, page
from store import adapters, checkpoints, jobs
from store.blobs import BlobStore
from store.errors import InvalidRequestError, NotFoundError
from store.models import Job

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
FORMATS = ("adapter", "merged")


@router.get("/{job_id}/checkpoints", response_model=ListObject)
def list_checkpoints(
    job_id: str,
    project: CurrentProject,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> ListObject:
    """The job's checkpoints, newest first."""
    jobs.get_job(session, project.id, job_id)
    rows, has_more = checkpoints.list_checkpoints(session, job_id, after=after, limit=limit)
    return page([checkpoint_object(r) for r in rows], has_more, with_ids=True)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for one `bytes=` range; None when unsatisfiable; full on multi."""
    match = _RANGE.match(header.strip())
    if match is None:
        return (0, size - 1) if "," in header else None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        length = int(last)
        return None if length == 0 or size == 0 else (max(size - length, 0), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


@router.get("/{job_id}/adapter", response_model=None)
async def download_adapter(
    request: Request,
    job_id: str,
    project: CurrentProject,
    step: Annotated[int | None, Query(ge=0)] = None,
    format: str = "adapter",
) -> Response:
    """The PEFT adapter `.tar.gz` (final, or the checkpoint at `step`); `format=merged`: the
    adapter merged into its base (see api/routes/exports.py)."""
    if format not in FORMATS:
        raise InvalidRequestError(f"format must be one of {', '.join(FORMATS)}", param="format")
    with request.app.state.session_factory() as session:
        job = jobs.get_job(session, project.id, job_id)
        if format == "merged":
            return await merged_export(request, job, step)
        return _adapter_archive(request, session, request.app.state.blobs, job, step)


def _adapter_archive(
    request: Request, session: Session, blobs: BlobStore, job: Job, step: int | None
) -> Response:
    """The adapter archive with Range support."""
    if step is None:
        adapter = adapters.adapter_for_job(session, job.id)
        if adapter is None:
            raise NotFoundError("adapter for job", job.id)
        key, size, digest = adapter.blob_key, adapter.bytes, adapter.sha256
        name = f"{job.id}-adapter.tar.gz"
    else:
        ckpt = checkpoints.get_checkpoint_at_step(session, job.id, step)
        key, size, digest = ckpt.blob_key, ckpt.bytes, ckpt.sha256
        name = f"{job.id}-step-{step}-adapter.tar.gz"
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{name}"',
        "ETag": f'"{digest}"',
    }
    range_header = request.headers.get("range")
    if range_header is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(
            blobs.iter_range(key), media_type="application/gzip", headers=headers
        )
    span = parse_range(range_header, size)
    if span is None:
        headers["Content-Range"] = f"bytes */{size}"
        return error_response(
            416,
            f"Range '{range_header}' cannot be satisfied for {size} bytes.",
            param="Range",
            code="range_not_satisfiable",
            headers=headers,
        )
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        blobs.iter_range(key, start, end),
        status_code=206,
        media_type="application/gzip",
        headers=headers,
    )
