"""/v1/models: catalog base models plus the project's fine-tuned models; ids with '/'."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.settings import Settings
from tests.helpers import KeyedProject, created_job, make_project


def _fine_tuned(
    client: TestClient, keyed: KeyedProject, session: Session, settings: Settings
) -> tuple[str, str]:
    job_json = created_job(client, keyed, suffix="m")
    job = jobs.claim_job(session, job_json["id"], "test-worker")
    assert job is not None
    adapter = save_adapter(session, BlobStore(settings.blob_dir), job, b"adapter")
    jobs.succeed_job(session, job)
    return adapter.fine_tuned_model, adapter.blob_key


def test_list_models_has_base_and_fine_tuned(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    name, _ = _fine_tuned(client, keyed_project, db_session, quaff_settings)
    body = client.get("/v1/models", headers=keyed_project.headers).json()
    ids = [m["id"] for m in body["data"]]
    assert ids == ["tiny-llama", "HuggingFaceTB/SmolLM2-135M-Instruct", name]
    assert body["data"][0]["owned_by"] == "quaff"
    assert body["data"][2]["owned_by"] == keyed_project.project.id
    other = make_project(db_session)
    other_ids = [m["id"] for m in client.get("/v1/models", headers=other.headers).json()["data"]]
    assert name not in other_ids


def test_retrieve_model_with_a_slash(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.get(
        "/v1/models/HuggingFaceTB/SmolLM2-135M-Instruct", headers=keyed_project.headers
    )
    assert response.status_code == 200
    assert response.json()["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert response.json()["object"] == "model"


def test_retrieve_model_not_found(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.get("/v1/models/ft:nope:x:y", headers=keyed_project.headers)
    assert response.status_code == 404
    assert response.json()["error"] == {
        "message": "No model found with id 'ft:nope:x:y'.",
        "type": "not_found_error",
        "param": "model",
        "code": None,
    }


def test_delete_fine_tuned_model_removes_adapter_and_blob(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    name, key = _fine_tuned(client, keyed_project, db_session, quaff_settings)
    other = make_project(db_session)
    assert client.delete(f"/v1/models/{name}", headers=other.headers).status_code == 404
    response = client.delete(f"/v1/models/{name}", headers=keyed_project.headers)
    assert response.status_code == 200
    assert response.json() == {"id": name, "object": "model", "deleted": True}
    assert client.get(f"/v1/models/{name}", headers=keyed_project.headers).status_code == 404
    assert not BlobStore(quaff_settings.blob_dir).exists(key)


def test_delete_base_model_is_refused(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.delete("/v1/models/tiny-llama", headers=keyed_project.headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"
