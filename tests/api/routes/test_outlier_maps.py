"""/v1/outlier_maps: maps stored by the store (as the worker does), listed and retrieved."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from store.blobs import BlobStore
from store.models import OutlierMap
from store.outlier_maps import create_outlier_map, delete_outlier_map, find_reusable
from store.settings import Settings
from tests.helpers import KeyedProject, created_job, make_project

OPTIONS = {"outlier_strategy": "mean_times", "outlier_threshold": 100.0, "outlier_max_ratio": 0.01}


def _map(session: Session, settings: Settings, keyed: KeyedProject) -> OutlierMap:
    return create_outlier_map(
        session,
        BlobStore(settings.blob_dir),
        keyed.project.id,
        base_model="tiny-llama",
        dataset_sha256="ab" * 32,
        options=OPTIONS,
        payload={"layers": {"model.layers.0.mlp.down_proj": [3, 17], "lm_head": []}},
    )


def test_retrieve_outlier_map_with_layers(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    row = _map(db_session, quaff_settings, keyed_project)
    body = client.get(f"/v1/outlier_maps/{row.id}", headers=keyed_project.headers).json()
    assert body["object"] == "outlier_map"
    assert (body["base_model"], body["strategy"], body["threshold"]) == (
        "tiny-llama",
        "mean_times",
        100.0,
    )
    assert body["layers"] == {"model.layers.0.mlp.down_proj": [3, 17], "lm_head": []}
    assert (body["n_layers"], body["n_outlier_channels"]) == (2, 2)
    listed = client.get("/v1/outlier_maps", headers=keyed_project.headers).json()
    assert [m["id"] for m in listed["data"]] == [row.id]
    assert listed["data"][0]["layers"] is None


def test_retrieve_outlier_map_of_another_project_is_not_found(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    row = _map(db_session, quaff_settings, keyed_project)
    other = make_project(db_session)
    response = client.get(f"/v1/outlier_maps/{row.id}", headers=other.headers)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"No outlier map found with id '{row.id}'."


def test_find_reusable_matches_model_data_and_options(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    row = _map(db_session, quaff_settings, keyed_project)
    pid = keyed_project.project.id
    found = find_reusable(
        db_session, pid, base_model="tiny-llama", dataset_sha256="ab" * 32, options=dict(OPTIONS)
    )
    assert found is not None
    assert found.id == row.id
    other_options = {**OPTIONS, "outlier_max_ratio": 0.02}
    assert (
        find_reusable(
            db_session,
            pid,
            base_model="tiny-llama",
            dataset_sha256="ab" * 32,
            options=other_options,
        )
        is None
    )


def test_job_can_reuse_an_outlier_map(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    row = _map(db_session, quaff_settings, keyed_project)
    job = created_job(client, keyed_project, quantization={"outlier_map": row.id})
    assert job["outlier_map"] == row.id
    assert job["quantization"]["outlier_map"] == row.id


def test_delete_outlier_map_removes_its_blob(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    row = _map(db_session, quaff_settings, keyed_project)
    blobs = BlobStore(quaff_settings.blob_dir)
    key = row.blob_key
    assert blobs.exists(key)
    delete_outlier_map(db_session, blobs, row)
    assert db_session.get(OutlierMap, row.id) is None
    assert not blobs.exists(key)
