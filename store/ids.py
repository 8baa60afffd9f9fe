"""Public ids that sort by creation time: `<prefix>-<14 hex µs><10 hex random>`."""

from __future__ import annotations

import secrets
import threading
import time

_lock = threading.Lock()
_last_us = 0


def new_id(prefix: str) -> str:
    """A new id; later ids from one process always compare greater (newest first = id desc)."""
    global _last_us
    with _lock:
        now = time.time_ns() // 1000
        _last_us = max(now, _last_us + 1)
        stamp = _last_us
    return f"{prefix}-{stamp:014x}{secrets.token_hex(5)}"


def now_s() -> int:
    """The current unix time in whole seconds."""
    return int(time.time())
