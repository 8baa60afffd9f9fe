"""The create body: each option's value is checked here, at the edge, and the job keeps what the
user asked for (a learning rate left out is shown resolved, not stored)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.job_body import JobCreate
from store.models import Job
from tests.helpers import KeyedProject, created_job, uploaded_file_id


def _refused(client: TestClient, keyed: KeyedProject, **body: Any) -> dict[str, Any]:
    payload = {"model": "tiny-llama", "training_file": uploaded_file_id(client, keyed), **body}
    response = client.post("/v1/fine_tuning/jobs", headers=keyed.headers, json=payload)
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    return error


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"lora": {"r": 0}}, ("lora", "r")),
        ({"quantization": {"outlier_map": "file-1"}}, ("quantization", "outlier_map")),
        (
            {"hyperparameters": {"learning_rate_multiplier": 0}},
            ("hyperparameters", "learning_rate_multiplier"),
        ),
        ({"training": {"max_seq_length": None}}, ("training", "max_seq_length")),
        ({"seed": -1}, ("seed",)),
    ],
)
def test_each_value_is_checked_by_the_body(body: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        JobCreate.model_validate({"model": "tiny-llama", "training_file": "file-1", **body})
    assert exc.value.errors()[0]["loc"] == loc


def test_an_outlier_map_that_is_no_id_is_a_400(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    error = _refused(client, keyed_project, quantization={"outlier_map": "file-1"})
    assert error["param"] == "quantization.outlier_map"
    assert "om-" in error["message"]


def test_a_renamed_option_is_refused_naming_its_new_name(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    error = _refused(client, keyed_project, quantization={"momentum": 0.9})
    assert error["param"] == "quantization.momentum"
    assert "quantization.scale_beta" in error["message"]


def test_a_renamed_option_is_not_in_the_schema() -> None:
    properties = JobCreate.model_json_schema()["$defs"]["QuantizationOptions"]["properties"]
    assert "momentum" not in properties
    assert "scale_beta" in properties


def test_a_multiplier_is_stored_as_asked_and_the_rate_shown_resolved(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    job = created_job(
        client,
        keyed_project,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"learning_rate_multiplier": 2.0}},
        },
    )
    assert job["hyperparameters"]["learning_rate_multiplier"] == 2.0
    assert job["training"]["learning_rate"] is None
    assert job["resolved"] == {"learning_rate": pytest.approx(4e-4)}
    row = db_session.get(Job, job["id"])
    assert row is not None
    assert row.training["learning_rate"] is None


def test_an_absolute_rate_is_stored_and_shown_as_given(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    job = created_job(client, keyed_project, training={"learning_rate": 1e-3})
    assert job["training"]["learning_rate"] == pytest.approx(1e-3)
    assert job["resolved"] == {"learning_rate": pytest.approx(1e-3)}
