"""Event rules: a job's terminal event is its last; one metrics event per step."""

from __future__ import annotations

from sqlalchemy.orm import Session

from store import jobs
from store.events import add_event, discard_metrics_after, list_events
from store.pages import Cursor
from store.settings import Settings
from tests.helpers import KeyedProject, queued_job


def _metrics(session: Session, job_id: str, step: int, loss: float) -> None:
    add_event(
        session, job_id, f"Step {step}/9: training loss={loss}", type="metrics",
        data={"step": step, "train_loss": loss},
    )  # fmt: skip
    session.commit()


def test_no_event_is_added_after_the_terminal_one(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    jobs.cancel_job(db_session, job)
    assert add_event(db_session, job.id, "Training stopped at step 3") is None
    _metrics(db_session, job.id, 4, 0.5)
    db_session.commit()
    newest = list_events(db_session, job.id, Cursor(limit=1)).rows
    assert [e.message for e in newest] == ["Job cancelled by the user"]


def test_a_metrics_event_per_step_replaced_when_the_step_is_trained_again(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    for step in (1, 2, 3):
        _metrics(db_session, job.id, step, 1.0)
    assert discard_metrics_after(db_session, job.id, 1) == 2  # resumed from step 1
    for step in (2, 3):
        _metrics(db_session, job.id, step, 0.5)
    _metrics(db_session, job.id, 3, 0.25)  # an evaluation at step 3 updates its event
    rows = list_events(db_session, job.id, Cursor(limit=100)).rows
    metrics = [(e.data or {}).get("train_loss") for e in reversed(rows) if e.type == "metrics"]
    steps = [e.step for e in reversed(rows) if e.type == "metrics"]
    assert (steps, metrics) == ([1, 2, 3], [1.0, 0.5, 0.25])
