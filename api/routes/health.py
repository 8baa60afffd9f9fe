"""Liveness and readiness (database and broker)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu.exceptions import KombuError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import QueueDep, SessionDep
from api.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(session: SessionDep, queue: QueueDep) -> dict[str, Any] | JSONResponse:
    """200 when the database and the broker answer; 503 naming what failed otherwise."""
    problems: list[str] = []
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        problems.append(f"database: {type(exc).__name__}")
    try:
        queue.check()
    except (OSError, KombuError, SQLAlchemyError) as exc:
        problems.append(f"broker: {type(exc).__name__}: {exc}")
    if problems:
        return error_response(503, "Not ready: " + "; ".join(problems), code="not_ready")
    return {"status": "ready", "database": "ok", "broker": "ok"}
