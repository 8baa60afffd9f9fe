"""Where a local server is and which key to use: one lookup for `quaff jobs` and the snippets.

`quaff serve` writes DATA_DIR/server.json (its API root) while it runs and keeps the key it
made in DATA_DIR/api-key; the client CLI reads them when no flag or variable says otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from store.settings import Settings, get_settings

KEY_FILE = "api-key"
SERVER_FILE = "server.json"
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
KEY_VARIABLES = ("QUAFF_API_KEY", "OPENAI_API_KEY")
URL_VARIABLES = ("QUAFF_BASE_URL", "OPENAI_BASE_URL")


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
    """$QUAFF_BASE_URL, $OPENAI_BASE_URL, the local server's announcement, or the default."""
    for name in URL_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    path = server_path(settings or get_settings())
    try:
        announced = json.loads(path.read_text(encoding="utf-8"))
        return str(announced["base_url"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_BASE_URL


def find_key(settings: Settings | None = None) -> str | None:
    """$QUAFF_API_KEY, $OPENAI_API_KEY, or the local server's key file; None when none."""
    for name in KEY_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    try:
        key = key_path(settings or get_settings()).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key or None
