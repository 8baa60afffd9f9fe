"""`GET /v1/fine_tuning/jobs/{id}/adapter?format=merged|gguf|gguf_lora`: built once on a node,
then served.

The first request starts the build and answers 202 with `Retry-After`; later ones answer 202
while it builds, then the `.tar.gz` of the transformers directory (or 400 with the measured
difference when its check failed). The export is cached per adapter checksum.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.errors import error_response
from api.inference import forward, no_node, ranked_nodes
from store import exports
from store.blobs import BlobStore
from store.model_refs import job_model_ref
from store.models import Job, MergedExport
from store.settings import Settings

TASKS_PATH = "/internal/v1/tasks"
BUILD_RETRY_SECONDS = 5


def export_object(row: MergedExport) -> dict[str, Any]:
    """`object: "fine_tuning.export"` (what a 202 or a failure reports)."""
    return {
        "id": row.id, "object": "fine_tuning.export", "fine_tuning_job_id": row.job_id,
        "step": row.step, "format": row.format, "status": row.status,
        "verification": row.verification,
        "error": {"message": row.error_message} if row.error_message else None,
        "created_at": row.created_at, "finished_at": row.finished_at,
    }  # fmt: skip


def _state(
    request: Request, job: Job, step: int | None, fmt: str
) -> tuple[MergedExport | None, str | None]:
    """The export row (begun on a node when it needs building) and the node to ask, if any."""
    settings: Settings = request.app.state.settings
    with request.app.state.session_factory() as session:
        ref = job_model_ref(session, job, step)
        sha = str(ref.sha256)
        row = exports.find_export(session, job.id, sha, fmt)
        if not exports.needs_build(session, row, settings.infer_lease_seconds):
            return row, None
        nodes = ranked_nodes(session, settings, ref)
        if not nodes:
            return None, None
        row = exports.begin_export(
            session, row, job_id=job.id, step=step, source_sha256=sha, node_id=nodes[0].id, fmt=fmt
        )
        return row, nodes[0].id


def _building(row: MergedExport) -> Response:
    return JSONResponse(export_object(row), status_code=202,
                        headers={"Retry-After": str(BUILD_RETRY_SECONDS)})  # fmt: skip


async def merged_export(
    request: Request, job: Job, step: int | None, fmt: str = "merged"
) -> Response:
    """The export's archive in `fmt`, or its build status."""
    row, node_id = await run_in_threadpool(_state, request, job, step, fmt)
    if row is None:
        return no_node()
    if node_id is not None:
        with request.app.state.session_factory() as session:
            nodes = [n for n in ranked_nodes(session, request.app.state.settings, None)
                     if n.id == node_id]  # fmt: skip
        sent = await forward(nodes, request.app.state.settings, TASKS_PATH,
                             {"type": "export", "id": row.id})  # fmt: skip
        if sent.status_code != 202:
            return sent
        return _building(row)
    if row.status == "building":
        return _building(row)
    if row.status == "failed" or row.blob_key is None:
        return error_response(400, f"The {fmt} export failed: {row.error_message}",
                              param="format", code="export_failed")  # fmt: skip
    blobs: BlobStore = request.app.state.blobs
    name = f"{job.id}{'' if step is None else f'-step-{step}'}-{fmt.replace('_', '-')}.tar.gz"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "ETag": f'"{row.sha256}"',
               "Content-Length": str(row.bytes)}  # fmt: skip
    return StreamingResponse(blobs.iter_range(row.blob_key), media_type="application/gzip",
                             headers=headers)  # fmt: skip
