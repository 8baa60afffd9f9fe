"""`client.fine_tuning.alpha.graders.run / validate`: check a grader, or grade one sample."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from api.deps import CurrentProject, SettingsDep
from quaff_core.graders import registry
from quaff_core.graders.outcome import ERROR_FLAGS, Outcome
from quaff_core.graders.templates import namespace
from store.grading import checked_grader, grading_context

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["graders"])
_FORBID = ConfigDict(extra="forbid")


class ValidateBody(BaseModel):
    """`graders.validate(grader=...)`."""

    model_config = _FORBID
    grader: Any


class RunBody(BaseModel):
    """`graders.run(grader=..., model_sample=..., item=...)`."""

    model_config = _FORBID
    grader: Any
    model_sample: str
    item: Any = None


def errors(outcome: Outcome) -> dict[str, Any]:
    """OpenAI's `metadata.errors`: every flag, and the details of the one raised."""
    flags: dict[str, Any] = {flag: flag == outcome.error for flag in ERROR_FLAGS}
    flags["python_grader_runtime_error_details"] = (
        outcome.detail if outcome.error == "python_grader_runtime_error" else None
    )
    flags["python_grader_server_error_type"] = (
        outcome.detail if outcome.error == "python_grader_server_error" else None
    )
    flags["model_grader_server_error_details"] = (
        outcome.detail if outcome.error == "model_grader_server_error" else None
    )
    return flags


def run_response(spec: dict[str, Any], outcome: Outcome, seconds: float) -> dict[str, Any]:
    """OpenAI's GraderRunResponse."""
    scores = outcome.sub_scores or {spec["name"]: outcome.score}
    return {
        "reward": outcome.score,
        "metadata": {
            "name": spec["name"],
            "type": spec["type"],
            "errors": errors(outcome),
            "execution_time": seconds,
            "scores": scores,
            "token_usage": outcome.token_usage or None,
            "sampled_model_name": None,
            "error_detail": outcome.detail,
        },
        "sub_rewards": dict(outcome.sub_scores),
        "model_grader_token_usage_per_model": {},
    }


@router.post("/validate")
async def validate_grader(
    body: ValidateBody, request: Request, project: CurrentProject, settings: SettingsDep
) -> dict[str, Any]:
    """The grader as given when it can run here; a 400 naming the field otherwise."""
    context = grading_context(request.app.state.session_factory, settings, project.id)
    return {"grader": await run_in_threadpool(checked_grader, body.grader, context)}


def _run(body: RunBody, context: registry.GradingContext) -> dict[str, Any]:
    spec = checked_grader(body.grader, context)
    started = time.monotonic()
    [outcome] = registry.grade_many(spec, [namespace(body.model_sample, body.item)], context)
    return run_response(spec, outcome, time.monotonic() - started)


@router.post("/run")
async def run_grader(
    body: RunBody, request: Request, project: CurrentProject, settings: SettingsDep
) -> dict[str, Any]:
    """Grade one sample against its item; a failing sample is a zero reward with its error."""
    context = grading_context(request.app.state.session_factory, settings, project.id)
    return await run_in_threadpool(_run, body, context)
