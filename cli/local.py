"""Where a local server is and which key to use: one lookup for `quaff jobs` and the snippets.

`quaff serve` writes DATA_DIR/server.json (its API root) while it runs and keeps the key it
made in DATA_DIR/api-key; the client CLI reads them when no flag or setting says otherwise
(settings: QUAFF_BASE_URL or OPENAI_BASE_URL, QUAFF_API_KEY or OPENAI_API_KEY).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from store.settings import Settings, get_settings

KEY_FILE = "api-key"
SERVER_FILE = "server.json"
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def key_path(settings: Settings) -> Path:
    """The file `quaff serve --ensure-key` keeps its key in."""
    return settings.data_dir / KEY_FILE


def server_path(settings: Settings) -> Path:
    """The file a running `quaff serve` announces its API root in."""
    return settings.data_dir / SERVER_FILE


def announce(settings: Settings, base_url: str) -> Path:
    """Record the API root of this server (written atomically)."""
    target = server_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"base_url": base_url, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, target)
    return target


def withdraw(settings: Settings) -> None:
    """Forget the announcement (the server stopped)."""
    server_path(settings).unlink(missing_ok=True)


def find_base_url(settings: Settings | None = None) -> str:
    """The configured API root, the local server's announcement, or the default."""
    settings = settings or get_settings()
    if settings.client_base_url:
        return settings.client_base_url
    try:
        announced = json.loads(server_path(settings).read_text(encoding="utf-8"))
        return str(announced["base_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_BASE_URL


def find_key(settings: Settings | None = None) -> str | None:
    """The configured key, or the local server's key file; None when there is none."""
    settings = settings or get_settings()
    if settings.client_api_key:
        return settings.client_api_key
    try:
        key = key_path(settings).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key or None
