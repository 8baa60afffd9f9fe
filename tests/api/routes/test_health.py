"""/healthz and /readyz (database and broker)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.main import create_app
from store.settings import Settings


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "database": "ok", "broker": "ok"}


def test_readyz_unreachable_broker_is_503(quaff_settings: Settings) -> None:
    broken = quaff_settings.model_copy(update={"broker_url": "redis://127.0.0.1:1/0"})
    with TestClient(create_app(broken)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "not_ready")
    assert error["message"].startswith("Not ready: broker:")
