"""Who is calling: the bearer key's project, from a short-lived in-process cache or the store.

A poll must not cost a database round trip for its key: a hit is reused for
`auth_cache_seconds` (a key revoked from another process stops working within that time; one
revoked through `KeyCache.invalidate` at once).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from store.models import Project

MAX_CACHED_KEYS = 10_000


@dataclass(frozen=True)
class Principal:
    """The caller: a project (its id and name) and the hash of the key it used."""

    id: str
    name: str
    key_hash: str

    @classmethod
    def of(cls, project: Project, key_hash: str) -> Principal:
        """The principal of a project row."""
        return cls(id=project.id, name=project.name, key_hash=key_hash)


class KeyCache:
    """Key hash -> Principal for `ttl` seconds, at most `max_entries` (least recent dropped)."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_CACHED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Principal | None:
        """The cached principal, or None when absent or older than `ttl`."""
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return None
            stored_at, principal = entry
            if self.clock() - stored_at >= self.ttl:
                del self._entries[key_hash]
                return None
            self._entries.move_to_end(key_hash)
            return principal

    def put(self, principal: Principal) -> None:
        """Remember a successful lookup (nothing when the ttl is 0)."""
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[principal.key_hash] = (self.clock(), principal)
            self._entries.move_to_end(principal.key_hash)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, key_hash: str | None = None) -> None:
        """Forget one key (revoked here) or, with None, every key."""
        with self._lock:
            if key_hash is None:
                self._entries.clear()
            else:
                self._entries.pop(key_hash, None)
