"""store.jobs: creation rules and the user's controls."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from store import jobs
from store.errors import InvalidRequestError
from store.events import events_since
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl, queued_job, store_training_file


def test_create_job_is_queued_with_resolved_options(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project, suffix="demo", seed=7)
    assert job.status == "queued"
    assert job.hyperparameters == {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}
    assert job.seed == 7
    assert [e.message for e in events_since(db_session, job.id)] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {job.training_file_id}",
        "Files validated, moving job to queued state",
    ]


def test_pause_and_resume(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    assert jobs.pause_job(db_session, job).status == "paused"
    assert jobs.resume_job(db_session, job).status == "queued"


def test_too_few_examples_is_refused(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    small = store_training_file(db_session, quaff_settings, keyed_project.project.id, chat_jsonl(9))
    with pytest.raises(InvalidRequestError) as exc:
        jobs.create_job(
            db_session,
            quaff_settings,
            keyed_project.project.id,
            {"model": "tiny-llama", "training_file": small.id},
        )
    assert (exc.value.code, exc.value.param) == ("invalid_n_examples", "training_file")


def test_the_default_seed_is_recorded(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    assert queued_job(db_session, quaff_settings, keyed_project).seed == 42


def test_a_preference_file_is_refused_for_a_supervised_job(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    pair = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
    }
    data = b"".join(json.dumps(pair).encode() + b"\n" for _ in range(10))
    pairs = store_training_file(db_session, quaff_settings, keyed_project.project.id, data)
    assert (pairs.status, pairs.data_format) == ("processed", "preference")
    with pytest.raises(InvalidRequestError) as exc:
        jobs.create_job(
            db_session,
            quaff_settings,
            keyed_project.project.id,
            {"model": "tiny-llama", "training_file": pairs.id},
        )
    assert (exc.value.code, exc.value.param) == ("invalid_file", "training_file")
    assert "method 'dpo'" in exc.value.message
