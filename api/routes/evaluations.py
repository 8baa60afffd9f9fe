"""Evaluations of a job (our extension): the tuned model against the base or a checkpoint."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.deps import CurrentProject, SessionDep, SettingsDep
from api.inference import forward, no_node, ranked_nodes
from api.pages import PageDep, list_object
from api.schemas import CursorList
from store import evaluations, files, jobs
from store.errors import InvalidRequestError, NotFoundError
from store.model_refs import resolve_model
from store.models import Evaluation, Job
from store.settings import Settings

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])
TASKS_PATH = "/internal/v1/tasks"
FIELDS = frozenset({"file", "model", "compare_to"})


class EvaluationObject(BaseModel):
    """`object: "fine_tuning.evaluation"`: scores of models on a file, per model."""

    id: str
    object: Literal["fine_tuning.evaluation"] = "fine_tuning.evaluation"
    fine_tuning_job_id: str
    file: str
    status: str
    models: list[Any]
    results: Any
    error: dict[str, Any] | None
    created_at: int
    finished_at: int | None


class EvaluationList(CursorList[EvaluationObject]):
    """A page of evaluations."""


def evaluation_object(row: Evaluation) -> dict[str, Any]:
    """The wire form of an evaluation row (JSON-ready)."""
    error = {"message": row.error_message} if row.error_message else None
    return EvaluationObject(
        id=row.id,
        fine_tuning_job_id=row.job_id,
        file=row.file_id,
        status=row.status,
        models=list(row.models or []),
        results=row.results,
        error=error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    ).model_dump()


def _string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidRequestError(f"'{key}' must be a string", param=key)
    return value


def _models(session: Session, settings: Settings, job: Job, body: dict[str, Any]) -> list[str]:
    """[compared model, scored model]: both must be servable models of this project."""
    tuned = _string(body, "model") or job.fine_tuned_model
    if tuned is None:
        raise InvalidRequestError(
            f"Job {job.id} has no fine-tuned model yet; pass 'model' (a checkpoint name).",
            param="model",
        )
    other = _string(body, "compare_to") or "base"
    compared = job.model if other == "base" else other
    for name, param in ((tuned, "model"), (compared, "compare_to")):
        ref = resolve_model(session, settings, job.project_id, name)
        if ref.job_id not in (None, job.id):
            raise InvalidRequestError(f"'{name}' is not a model of job {job.id}", param=param)
    return [compared, tuned]


def _create(
    request: Request, project_id: str, job_id: str, body: Any
) -> tuple[dict[str, Any], Any]:
    settings: Settings = request.app.state.settings
    if not isinstance(body, dict) or set(body) - FIELDS:
        unknown = sorted(set(body) - FIELDS) if isinstance(body, dict) else ["body"]
        raise InvalidRequestError(f"Unknown field '{unknown[0]}'", param=unknown[0])
    with request.app.state.session_factory() as session:
        job = jobs.get_job(session, project_id, job_id)
        file_id = _string(body, "file")
        if file_id is None:
            raise InvalidRequestError("'file' (a validation file id) is required", param="file")
        try:
            row = files.get_file(session, project_id, file_id)
        except NotFoundError:
            raise InvalidRequestError(
                f"No file '{file_id}' in this project", param="file"
            ) from None
        if row.status != "processed":
            raise InvalidRequestError(f"File {file_id} is not a valid dataset", param="file")
        models = _models(session, settings, job, body)
        nodes = ranked_nodes(session, settings, None)
        if not nodes:
            return {}, None
        evaluation = evaluations.create_evaluation(session, job.id, file_id, models, nodes[0].id)
        return evaluation_object(evaluation), nodes[:1]


@router.post("/{job_id}/evaluations", response_model=None)
async def create_evaluation(
    request: Request, job_id: str, project: CurrentProject, body: Annotated[Any, Body()] = None
) -> Response:
    """Score the tuned model and the base (or a checkpoint) on `file`; runs on a node."""
    created, nodes = await run_in_threadpool(_create, request, project.id, job_id, body)
    if nodes is None:
        return no_node()
    sent = await forward(
        nodes, request.app.state.settings, TASKS_PATH, {"type": "evaluation", "id": created["id"]}
    )
    if sent.status_code != 202:
        await run_in_threadpool(_undispatched, request, created["id"])
        return sent
    return JSONResponse(created)


def _undispatched(request: Request, evaluation_id: str) -> None:
    with request.app.state.session_factory() as session:
        row = evaluations.get_evaluation(session, evaluation_id)
        evaluations.fail_evaluation(session, row, "No inference process could take it; retry.")


@router.get("/{job_id}/evaluations", response_model=EvaluationList)
def list_evaluations(
    job_id: str,
    project: CurrentProject,
    session: SessionDep,
    settings: SettingsDep,
    cursor: PageDep,
) -> EvaluationList:
    """The job's evaluations, newest first."""
    jobs.get_job(session, project.id, job_id)
    found = evaluations.list_evaluations(session, job_id, cursor)
    evaluations.reap_orphans(session, found.rows, settings.infer_lease_seconds)
    return list_object(EvaluationList, found, lambda r: EvaluationObject(**evaluation_object(r)))
