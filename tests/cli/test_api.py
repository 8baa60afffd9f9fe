"""`quaff api`: uvicorn runs the app with the settings' access log."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import uvicorn

from cli import api
from store.settings import get_settings


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_the_access_log_follows_its_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    monkeypatch.setenv("QUAFF_ACCESS_LOG", value)
    get_settings.cache_clear()
    try:
        args = argparse.Namespace(host="127.0.0.1", port=8123, no_migrate=True)
        assert api.run(args) == 0
    finally:
        get_settings.cache_clear()
    (kwargs,) = calls
    assert kwargs["access_log"] is expected
    assert (kwargs["host"], kwargs["port"], kwargs["factory"]) == ("127.0.0.1", 8123, True)
