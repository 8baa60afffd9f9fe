"""Evaluations of a job's models on a file: created by the API, run and finished by a node."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import infer_nodes
from store.errors import NotFoundError
from store.ids import new_id, now_s
from store.models import Evaluation
from store.pages import FIRST_PAGE, Cursor, Page, page

OPEN = ("queued", "running")


def create_evaluation(
    session: Session, job_id: str, file_id: str, models: list[str], node_id: str
) -> Evaluation:
    """A queued evaluation of `models` (model names) on `file_id`, sent to `node_id`."""
    row = Evaluation(
        id=new_id("fteval"),
        job_id=job_id,
        file_id=file_id,
        status="queued",
        models=models,
        results=[],
        node_id=node_id,
        created_at=now_s(),
    )
    session.add(row)
    session.commit()
    return row


def get_evaluation(session: Session, evaluation_id: str) -> Evaluation:
    """The evaluation; NotFoundError otherwise."""
    row = session.get(Evaluation, evaluation_id)
    if row is None:
        raise NotFoundError("evaluation", evaluation_id)
    return row


def list_evaluations(
    session: Session, job_id: str, cursor: Cursor = FIRST_PAGE
) -> Page[Evaluation]:
    """A page of the job's evaluations, newest first."""
    query = select(Evaluation).where(Evaluation.job_id == job_id)
    return page(session, query, Evaluation.id, cursor)


def start_evaluation(session: Session, evaluation_id: str, node_id: str) -> Evaluation | None:
    """Node: mark it running (None when it is not queued any more)."""
    row = session.get(Evaluation, evaluation_id)
    if row is None or row.status != "queued":
        return None
    row.status, row.node_id = "running", node_id
    session.commit()
    return row


def finish_evaluation(session: Session, row: Evaluation, results: list[dict[str, Any]]) -> None:
    """Node: store the scores."""
    row.status, row.results, row.finished_at = "succeeded", results, now_s()
    session.commit()


def fail_evaluation(session: Session, row: Evaluation, message: str) -> None:
    """Mark it failed with a message to act on."""
    row.status, row.error_message, row.finished_at = "failed", message, now_s()
    session.commit()


def reap_orphans(session: Session, rows: list[Evaluation], lease_seconds: float) -> None:
    """Open evaluations whose node stopped beating will never finish: mark them failed."""
    for row in rows:
        if row.status in OPEN and not infer_nodes.is_live(session, row.node_id, lease_seconds):
            fail_evaluation(session, row, "The inference process running it stopped; retry.")
