"""StoreCallbacks: a running job checkpoints at the safety interval as well as when asked; only
the newest safety checkpoint is kept, and none once the job has succeeded."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from api.schemas import job_object
from store.checkpoints import list_checkpoints
from store.events import list_events
from store.pages import Cursor
from store.settings import Settings
from tests.helpers import KeyedProject, queued_job, reloaded
from worker.pipeline import run_job


@pytest.mark.parametrize(
    ("interval", "saved_steps"),
    [
        (600.0, [3]),  # a short job only checkpoints at its end (n_checkpoints = 1)
        (1e-6, [1, 2, 3]),  # an overdue safety checkpoint is taken after every step
    ],
)
def test_safety_checkpoints_follow_the_interval(
    db_session: Session,
    quaff_settings: Settings,
    keyed_project: KeyedProject,
    interval: float,
    saved_steps: list[int],
) -> None:
    settings = quaff_settings.model_copy(update={"safety_checkpoint_seconds": interval})
    job = queued_job(
        db_session,
        settings,
        keyed_project,
        hyperparameters={"n_epochs": 1, "batch_size": 4},
        training={"max_seq_length": 64},
    )
    assert run_job(job.id, settings, "test:1") == "succeeded"
    job = reloaded(db_session, job)
    assert job.status == "succeeded"
    rows = list_checkpoints(db_session, job.id, Cursor(limit=50)).rows
    assert [(r.step_number, r.safety) for r in rows] == [(3, False)]  # the one the job asked for
    messages = [e.message for e in list_events(db_session, job.id, Cursor(limit=100)).rows]
    for step in saved_steps:
        assert f"Checkpoint saved at step {step}" in messages
    # each checkpoint re-measured the initial outlier map on that step's batch
    stability = job.outlier_stability or []
    assert [p["step"] for p in stability] == saved_steps
    assert all(0.0 <= p["recall"] <= 1.0 for p in stability)
    wire = job_object(job).outlier_stability or []
    assert [(p.step, p.recall) for p in wire] == [(p["step"], p["recall"]) for p in stability]
