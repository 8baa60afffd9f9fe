"""/v1/models: catalog base models plus the project's fine-tuned models; ids with '/'."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from store import exports, jobs
from store.adapters import save_adapter
from store.blobs import BlobInfo, BlobStore
from store.checkpoints import save_checkpoint
from store.files import create_result_file
from store.jobs import project_slot
from store.model_refs import resolve_model
from store.models import MergedExport
from store.settings import Settings
from store.sweeps import sweep_orphans
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


def test_delete_fine_tuned_model_removes_every_copy_of_its_weights(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    job_json = created_job(client, keyed_project, suffix="w")
    job = jobs.claim_job(db_session, job_json["id"], "test-worker")
    assert job is not None
    ckpt = save_checkpoint(db_session, blobs, job, step=2, metrics={}, source=b"ckpt")
    adapter = save_adapter(db_session, blobs, job, b"adapter")
    shared = BlobInfo(key=adapter.blob_key, bytes=adapter.bytes, sha256=adapter.sha256)
    result = create_result_file(
        db_session, blobs, job.project_id, filename="adapter.tar.gz", shared=shared
    )
    csv = create_result_file(db_session, blobs, job.project_id, filename="m.csv", source=b"s")
    jobs.set_result(db_session, job, result_files=[csv.id, result.id])
    jobs.succeed_job(db_session, job)
    headers = keyed_project.headers
    base = f"/v1/fine_tuning/jobs/{job.id}"
    usage = client.get("/v1/usage/storage", headers=headers).json()
    assert usage["adapters"] == {"count": 1, "bytes": len(b"adapter")}
    assert usage["files"]["count"] == 3  # upload, metrics, the adapter's result file (shared)
    assert client.get(f"{base}/adapter", headers=headers).content == b"adapter"

    assert (
        client.delete(f"/v1/models/{adapter.fine_tuned_model}", headers=headers).status_code == 200
    )
    assert client.get(f"{base}/adapter", headers=headers).status_code == 404
    assert client.get(f"{base}/adapter?step=2", headers=headers).status_code == 404
    assert client.get(f"/v1/files/{result.id}", headers=headers).status_code == 404
    assert client.get(f"/v1/files/{csv.id}", headers=headers).status_code == 200
    assert client.get(f"{base}/checkpoints", headers=headers).json()["data"] == []
    assert client.get(base, headers=headers).json()["result_files"] == [csv.id]
    assert not blobs.exists(adapter.blob_key)
    assert not blobs.exists(ckpt.blob_key)
    after = client.get("/v1/usage/storage", headers=headers).json()
    assert (after["adapters"], after["checkpoints"]) == ({"count": 0, "bytes": 0},) * 2


def test_deleting_the_shared_result_file_keeps_the_model(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    name, key = _fine_tuned(client, keyed_project, db_session, quaff_settings)
    blobs = BlobStore(quaff_settings.blob_dir)
    info = BlobInfo(key=key, bytes=blobs.size(key), sha256="x")
    result = create_result_file(
        db_session, blobs, keyed_project.project.id, filename="a.tar.gz", shared=info
    )
    assert client.delete(f"/v1/files/{result.id}", headers=keyed_project.headers).status_code == 200
    assert blobs.exists(key)
    assert client.get(f"/v1/models/{name}", headers=keyed_project.headers).status_code == 200


def test_fine_tuned_names_put_the_project_in_the_organization_slot() -> None:
    assert project_slot("My Team / Research", "proj-1") == "my-team-research"
    assert project_slot("ÄÖ!!", "proj-1") == "proj-1"
    assert len(project_slot("x" * 100, "proj-1")) == 40


def test_a_base_models_alias_is_a_model_id_everywhere(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    response = client.get("/v1/models/SmolLM2-135M-Instruct", headers=keyed_project.headers)
    assert response.status_code == 200
    assert response.json()["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    ref = resolve_model(
        db_session, quaff_settings, keyed_project.project.id, "SmolLM2-135M-Instruct"
    )
    assert ref.base == "HuggingFaceTB/SmolLM2-135M-Instruct"
    refused = client.delete("/v1/models/SmolLM2-135M-Instruct", headers=keyed_project.headers)
    assert refused.status_code == 400


def test_exports_count_in_usage_and_go_with_their_model(
    client: TestClient, keyed_project: KeyedProject, db_session: Session, quaff_settings: Settings
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    job_json = created_job(client, keyed_project, suffix="e")
    job = jobs.claim_job(db_session, job_json["id"], "test-worker")
    assert job is not None
    adapter = save_adapter(db_session, blobs, job, b"adapter")
    jobs.succeed_job(db_session, job)
    row = exports.begin_export(db_session, None, job_id=job.id, step=None,
                               source_sha256=adapter.sha256, node_id="node")  # fmt: skip
    archive = quaff_settings.data_dir / "merged.tar.gz"
    archive.write_bytes(b"merged weights")
    exports.finish_export(db_session, blobs, row, archive, {"passed": True})
    assert row.blob_key is not None
    export_key, export_id = row.blob_key, row.id
    headers = keyed_project.headers
    usage = client.get("/v1/usage/storage", headers=headers).json()
    assert usage["exports"] == {"count": 1, "bytes": len(b"merged weights")}
    assert usage["bytes"] >= len(b"adapter") + len(b"merged weights")
    report = sweep_orphans(quaff_settings.model_copy(update={"orphan_grace_seconds": 0}),
                           now=10**12)  # fmt: skip
    assert export_key not in report.blobs  # a row points at it: not an orphan
    assert blobs.exists(export_key)

    name = adapter.fine_tuned_model
    assert client.delete(f"/v1/models/{name}", headers=headers).status_code == 200
    assert not blobs.exists(export_key)
    db_session.expire_all()
    assert db_session.get(MergedExport, export_id) is None
    after = client.get("/v1/usage/storage", headers=headers).json()
    assert after["exports"] == {"count": 0, "bytes": 0}
