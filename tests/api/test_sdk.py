"""The official `openai` SDK against a real uvicorn on a loopback port (files, jobs, models)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI
from sqlalchemy.orm import Session

from api.main import create_app
from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.checkpoints import save_checkpoint
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl
from tests.processes import serve_in_thread


@pytest.fixture
def base_url(quaff_settings: Settings) -> Iterator[str]:
    """A uvicorn server on 127.0.0.1 serving the app, stopped after the test."""
    small = quaff_settings.model_copy(update={"max_upload_bytes": 64 * 1024})
    with serve_in_thread(create_app(small)) as url:
        yield url


@pytest.fixture
def sdk(base_url: str, keyed_project: KeyedProject) -> Iterator[OpenAI]:
    """An OpenAI client with the project's key and no retries."""
    client = OpenAI(base_url=base_url, api_key=keyed_project.key, max_retries=0)
    yield client
    client.close()


def test_sdk_files(sdk: OpenAI) -> None:
    data = chat_jsonl(10)
    created = sdk.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert created.status == "processed"
    assert created.bytes == len(data)
    assert sdk.files.retrieve(created.id).filename == "train.jsonl"
    assert [f.id for f in sdk.files.list()] == [created.id]
    assert sdk.files.content(created.id).read() == data
    bad = sdk.files.create(file=("bad.jsonl", b'{"text": "ok"}\n{oops\n'), purpose="fine-tune")
    assert bad.status == "error"
    assert bad.status_details is not None
    assert bad.status_details.startswith("line 2:")
    deleted = sdk.files.delete(bad.id)
    assert deleted.deleted is True
    with pytest.raises(openai.BadRequestError) as wrong_purpose:
        sdk.files.create(file=("t.jsonl", data), purpose="assistants")
    assert wrong_purpose.value.body["param"] == "purpose"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as too_big:
        sdk.files.create(file=("big.jsonl", chat_jsonl(2000)), purpose="fine-tune")
    assert too_big.value.status_code == 413
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve("file-missing")
    assert [f.id for f in sdk.files.list()] == [created.id]


def test_sdk_jobs(
    sdk: OpenAI, db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    train = sdk.files.create(file=("train.jsonl", chat_jsonl(12)), purpose="fine-tune")
    job = sdk.fine_tuning.jobs.create(
        model="tiny-llama",
        training_file=train.id,
        suffix="sdk",
        seed=3,
        metadata={"run": "sdk"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        extra_body={
            "lora": {"r": 8, "alpha": 16},
            "quantization": {"outlier_strategy": "zscore"},
            "training": {"max_seq_length": 128},
        },
    )
    assert job.status == "queued"
    assert job.hyperparameters.n_epochs == 2
    assert job.model_extra is not None
    assert job.model_extra["lora"]["r"] == 8
    assert job.model_extra["training"]["max_seq_length"] == 128
    other = sdk.fine_tuning.jobs.create(model="tiny-llama", training_file=train.id)
    listed = sdk.fine_tuning.jobs.list(metadata={"run": "sdk"})
    assert [j.id for j in listed.data] == [job.id]
    assert sdk.fine_tuning.jobs.retrieve(job.id).seed == 3
    assert sdk.fine_tuning.jobs.cancel(other.id).status == "cancelled"
    with pytest.raises(openai.BadRequestError) as again:
        sdk.fine_tuning.jobs.cancel(other.id)
    assert again.value.code == "invalid_job_state"
    assert sdk.fine_tuning.jobs.pause(job.id).status == "paused"
    assert sdk.fine_tuning.jobs.resume(job.id).status == "queued"

    # the worker's part, simulated with the store's functions
    blobs = BlobStore(quaff_settings.blob_dir)
    running = jobs.claim_job(db_session, job.id, "test-worker")
    assert running is not None
    save_checkpoint(db_session, blobs, running, step=3, metrics={"train_loss": 0.5}, source=b"c")
    save_adapter(db_session, blobs, running, b"adapter")
    jobs.succeed_job(db_session, running)

    events = sdk.fine_tuning.jobs.list_events(job.id, limit=2)
    assert [e.message for e in events.data] == [
        "The job has successfully completed",
        "New fine-tuned model created",
    ]
    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job.id)
    assert [c.step_number for c in checkpoints.data] == [3]
    assert checkpoints.data[0].metrics.train_loss == 0.5
    done = sdk.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded"
    project = keyed_project.project.name
    assert done.fine_tuned_model == f"ft:tiny-llama:{project}:sdk:{job.id[-8:]}"

    model_ids = [m.id for m in sdk.models.list()]
    checkpoint = checkpoints.data[0].fine_tuned_model_checkpoint
    assert model_ids == [
        "tiny-llama",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        done.fine_tuned_model,
        checkpoint,
    ]
    checkpoint_extra = sdk.models.retrieve(checkpoint).model_extra
    assert checkpoint_extra is not None
    assert checkpoint_extra["fine_tuning_job"] == job.id
    assert sdk.models.retrieve("HuggingFaceTB/SmolLM2-135M-Instruct").owned_by == "quaff"
    assert sdk.models.delete(done.fine_tuned_model).deleted is True
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(done.fine_tuned_model)


def test_sdk_bad_requests_name_the_param(sdk: OpenAI) -> None:
    train = sdk.files.create(file=("train.jsonl", chat_jsonl(10)), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as unknown_model:
        sdk.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=train.id)
    assert unknown_model.value.param == "model"
    with pytest.raises(openai.BadRequestError) as out_of_range:
        sdk.fine_tuning.jobs.create(
            model="tiny-llama", training_file=train.id, extra_body={"lora": {"dropout": 1.5}}
        )
    assert out_of_range.value.param == "lora.dropout"
    assert sdk.fine_tuning.jobs.list().data == []


def test_sdk_wrong_key_is_an_authentication_error(base_url: str) -> None:
    client = OpenAI(base_url=base_url, api_key="sk-quaff-not-a-key", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError) as exc:
        client.files.list()
    assert exc.value.code == "invalid_api_key"
