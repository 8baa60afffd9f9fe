"""Chat/completions in the API: checks before forwarding, node choice, and pass-through."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from store import catalog, infer_nodes
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.settings import Settings
from tests.helpers import KeyedProject, make_project, queued_job
from tests.processes import serve_in_thread

CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}
TOKEN = "node-token"


def fake_node(status: int = 200) -> FastAPI:
    """An inference node that records what it was sent and answers `status`."""
    node = FastAPI()
    node.state.seen = []

    @node.post("/internal/v1/generate", response_model=None)
    async def generate(request: Request) -> Any:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        payload = await request.json()
        node.state.seen.append(payload)
        if status == 429:
            return JSONResponse({"error": {"message": "full", "type": "invalid_request_error",
                                           "param": None, "code": "queue_full"}},
                                status_code=429, headers={"Retry-After": "3"})  # fmt: skip
        if payload["body"].get("stream"):
            chunks = [b'data: {"x": 1}\n\n', b"data: [DONE]\n\n"]
            return StreamingResponse(iter(chunks), media_type="text/event-stream")
        return {"object": "chat.completion", "model": payload["model"]["name"]}

    return node


@pytest.fixture
def node_url(db_session: Session, request: pytest.FixtureRequest) -> Iterator[tuple[str, FastAPI]]:
    status = getattr(request, "param", 200)
    app = fake_node(status)
    with serve_in_thread(app) as base:
        url = base.removesuffix("/v1")
        node = infer_nodes.register_node(db_session, url=url, token=TOKEN, hostname="h", pid=1,
                                         device="cpu", queue_size=4)  # fmt: skip
        yield url, app
        infer_nodes.remove_node(db_session, node.id)


def test_chat_is_forwarded_with_the_resolved_model(
    client: TestClient, keyed_project: KeyedProject, node_url: tuple[str, FastAPI]
) -> None:
    response = client.post("/v1/chat/completions", headers=keyed_project.headers, json=CHAT)
    assert response.status_code == 200, response.text
    assert response.json() == {"object": "chat.completion", "model": "tiny-llama"}
    sent = node_url[1].state.seen[-1]
    assert sent["kind"] == "chat"
    assert sent["model"]["base"] == "tiny-llama"
    assert sent["model"]["adapter_id"] is None


def test_a_stream_passes_through(
    client: TestClient, keyed_project: KeyedProject, node_url: tuple[str, FastAPI]
) -> None:
    response = client.post("/v1/completions", headers=keyed_project.headers,
                           json={"model": "tiny-llama", "prompt": "x", "stream": True})  # fmt: skip
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == 'data: {"x": 1}\n\ndata: [DONE]\n\n'


@pytest.mark.parametrize("node_url", [429], indirect=True)
def test_a_full_queue_is_429_with_retry_after(
    client: TestClient, keyed_project: KeyedProject, node_url: tuple[str, FastAPI]
) -> None:
    response = client.post("/v1/chat/completions", headers=keyed_project.headers, json=CHAT)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "queue_full"


def test_bad_parameters_are_400_before_any_node(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    response = client.post("/v1/chat/completions", headers=keyed_project.headers,
                           json={**CHAT, "temperature": 9})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "temperature"
    response = client.post("/v1/chat/completions", headers=keyed_project.headers, content=b"{")
    assert response.status_code == 400
    assert response.json()["error"]["param"] is None  # the guard: a malformed body names no field


def test_another_projects_model_is_404(
    client: TestClient, db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    other = make_project(db_session)
    job = queued_job(db_session, quaff_settings, other)
    adapter = save_adapter(db_session, BlobStore(quaff_settings.blob_dir), job, b"x")
    body = {**CHAT, "model": adapter.fine_tuned_model}
    response = client.post("/v1/chat/completions", headers=keyed_project.headers, json=body)
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"


def test_an_unavailable_base_is_400_saying_why(
    app: FastAPI, keyed_project: KeyedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(_settings: Settings, name: str) -> catalog.BaseModel:
        return catalog.BaseModel(id=name, available=False, reason="no package")

    monkeypatch.setattr(catalog, "get_base_model", unavailable)
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", headers=keyed_project.headers, json=CHAT)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_available"
    assert "no package" in response.json()["error"]["message"]


def test_no_node_is_503_naming_the_command(client: TestClient, keyed_project: KeyedProject) -> None:
    response = client.post("/v1/chat/completions", headers=keyed_project.headers, json=CHAT)
    assert response.status_code == 503
    assert "quaff infer" in response.json()["error"]["message"]
