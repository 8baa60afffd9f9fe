"""store.jobs: creation rules and the user's controls."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from store import jobs
from store.blobs import BlobStore
from store.errors import InvalidRequestError
from store.events import events_since
from store.files import new_upload, register_upload
from store.ids import new_id, now_s
from store.models import Adapter
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl, make_project, queued_job, store_training_file


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


def test_resuming_a_queued_or_running_job_says_it_is_not_paused(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    with pytest.raises(InvalidRequestError, match="is queued, not paused: it waits for a worker"):
        jobs.resume_job(db_session, job)
    jobs.claim_job(db_session, job.id, "w")
    with pytest.raises(InvalidRequestError, match="is running, not paused"):
        jobs.resume_job(db_session, job)


def test_cancelling_a_running_job_stops_training_at_its_recorded_step(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    assert jobs.record_progress(db_session, job, step=3, total_steps=75)
    db_session.commit()
    jobs.cancel_job(db_session, job)
    last_two = events_since(db_session, job.id)[-2:]
    assert [(e.kind, e.data) for e in last_two] == [
        ("training_stopped", {"step": 3, "reason": "cancelled"}),
        ("status", {"status": "cancelled", "previous": "running"}),
    ]
    # the step that was under way when the cancel came does not move the progress
    assert not jobs.record_progress(db_session, job, step=4, total_steps=75)
    db_session.commit()
    db_session.expire_all()
    assert job.step == 3


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


def _tuned(session: Session, settings: Settings, keyed: KeyedProject, **body: object) -> str:
    """A job with an adapter row (as a succeeded job has): its fine-tuned model name."""
    job = queued_job(session, settings, keyed, **body)
    name = jobs.fine_tuned_model_name(job)
    session.add(
        Adapter(
            id=new_id("adapter"), job_id=job.id, project_id=job.project_id,
            fine_tuned_model=name, base_model=job.model, blob_key="k", sha256="0" * 64,
            bytes=1, created_at=now_s(),
        )
    )  # fmt: skip
    session.commit()
    return name


def test_a_continued_job_takes_base_adapter_shape_and_records_its_source(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    name = _tuned(db_session, quaff_settings, keyed_project, lora={"r": 4}, peft={"method": "lora"})
    job = queued_job(db_session, quaff_settings, keyed_project, model=name)
    assert (job.model, job.continued_from) == ("tiny-llama", name)
    assert job.lora["r"] == 4
    with pytest.raises(InvalidRequestError) as exc:
        queued_job(db_session, quaff_settings, keyed_project, model=name, lora={"r": 8})
    assert exc.value.param == "lora.r"
    with pytest.raises(InvalidRequestError) as exc:
        queued_job(db_session, quaff_settings, keyed_project, model=name, peft={"method": "ia3"})
    assert exc.value.param == "peft.method"


def test_another_projects_model_is_not_found(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    name = _tuned(db_session, quaff_settings, keyed_project)
    other = make_project(db_session)
    with pytest.raises(InvalidRequestError) as exc:
        queued_job(db_session, quaff_settings, other, model=name)
    assert (exc.value.code, exc.value.param) == ("model_not_found", "model")


def test_a_job_on_a_file_still_being_validated_is_told_to_wait(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    file_id, key = new_upload()
    blob = blobs.write_bytes(key, chat_jsonl(10))
    register_upload(
        db_session, blobs, keyed_project.project.id, file_id=file_id, blob=blob,
        filename="t.jsonl", purpose="fine-tune", pending=True,
    )  # fmt: skip
    body = {"model": "tiny-llama", "training_file": file_id}
    with pytest.raises(InvalidRequestError, match="still being validated") as refused:
        jobs.create_job(db_session, quaff_settings, keyed_project.project.id, body)
    assert refused.value.code == "file_not_ready"
