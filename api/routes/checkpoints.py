"""Checkpoints of a job, and the adapter download (final or at a step) with HTTP Range."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from api.db import DbDep
from api.deps import BlobsDep, CurrentProject
from api.errors import error_response
from api.pages import CheckpointPageDep, list_object
from api.routes.exports import merged_export
from api.schemas import CheckpointList, checkpoint_object
from store import adapters, checkpoints, jobs
from store.blobs import BlobStore

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_STEP = 2**31 - 1
_DIGITS = 18  # longer positions are past any blob: unsatisfiable, never parsed


@router.get("/{job_id}/checkpoints", response_model=CheckpointList)
async def list_checkpoints(
    job_id: str, project: CurrentProject, db: DbDep, cursor: CheckpointPageDep
) -> Response:
    """The job's checkpoints, newest first."""

    def work(session: Session) -> CheckpointList:
        jobs.get_job(session, project.id, job_id)
        found = checkpoints.list_checkpoints(session, job_id, cursor)
        return list_object(CheckpointList, found, checkpoint_object)

    return await db.respond(work)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) for one `bytes=` range; None when unsatisfiable; full on multi."""
    match = _RANGE.match(header.strip())
    if match is None:
        return (0, size - 1) if "," in header else None
    first, last = (group.lstrip("0") or ("0" if group else "") for group in match.groups())
    if not first and not last:
        return None
    if len(first) > _DIGITS:
        return None
    last = last if len(last) <= _DIGITS else str(10**_DIGITS)
    if not first:
        length = int(last)
        return None if length == 0 or size == 0 else (max(size - length, 0), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


@router.get(
    "/{job_id}/adapter",
    response_model=None,
    responses={
        200: {"content": {"application/gzip": {}}, "description": "The adapter archive"},
        206: {"content": {"application/gzip": {}}, "description": "A byte range of it"},
        416: {"description": "The range cannot be satisfied"},
    },
)
async def download_adapter(
    request: Request,
    job_id: str,
    project: CurrentProject,
    db: DbDep,
    blobs: BlobsDep,
    step: Annotated[int | None, Query(ge=0, le=MAX_STEP)] = None,
    format: Literal["adapter", "merged", "gguf", "gguf_lora"] = "adapter",
    gguf_type: Literal["f16", "q8_0"] = "f16",
) -> Response:
    """The PEFT adapter `.tar.gz` (final, or the checkpoint at `step`); supports `Range`.
    `format=merged`: the adapter merged into its base; `gguf`: that merged model as GGUF
    (`gguf_type` f16 or q8_0) with an Ollama Modelfile; `gguf_lora`: the adapter as a GGUF LoRA
    (see api/routes/exports.py)."""
    if format != "adapter":
        fmt = f"gguf_{gguf_type}" if format == "gguf" else format
        job = await db.run(lambda s: jobs.get_job(s, project.id, job_id))
        return await merged_export(request, job, step, fmt)
    key, size, digest, name = await db.run(lambda s: _archive(s, project.id, job_id, step))
    return _send(request, blobs, key=key, size=size, digest=digest, name=name)


def _archive(
    session: Session, project_id: str, job_id: str, step: int | None
) -> tuple[str, int, str, str]:
    """(blob key, bytes, sha256, download name) of the job's adapter or checkpoint at `step`."""
    job = jobs.get_job(session, project_id, job_id)
    if step is None:
        adapter = adapters.get_job_adapter(session, job.id)
        key, size, digest = adapter.blob_key, adapter.bytes, adapter.sha256
        name = f"{job.id}-adapter.tar.gz"
    else:
        ckpt = checkpoints.get_checkpoint_at_step(session, job.id, step)
        key, size, digest = ckpt.blob_key, ckpt.bytes, ckpt.sha256
        name = f"{job.id}-step-{step}-adapter.tar.gz"
    return key, size, digest, name


def _send(
    request: Request, blobs: BlobStore, *, key: str, size: int, digest: str, name: str
) -> Response:
    """The archive, whole or the one `Range` asked for."""
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
