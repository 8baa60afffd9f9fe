"""API fixtures: the app on the test database, an in-process client, upload and job helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from store.settings import Settings


@pytest.fixture
def app(quaff_settings: Settings) -> FastAPI:
    """The ASGI app on the test settings."""
    return create_app(quaff_settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An in-process HTTP client for the app (no auth header)."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
