"""The bases a worker keeps between jobs: least recently used first out, within a memory budget,
released after an idle time."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.training.base import TrainingBase

logger = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class BaseKey:
    """What makes two prepared bases interchangeable."""

    model: str
    map_digest: str  # "" for an unquantized base
    compute_dtype: str
    device: str


def map_digest(outlier_map: OutlierMap | None) -> str:
    """A checksum of a map's content ("" for none)."""
    if outlier_map is None:
        return ""
    text = json.dumps(outlier_map.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class Lru(Generic[K, V]):
    """An ordered map that drops its least recently used entries past `capacity` (in `size`
    units: entries by default) and entries unused for `idle_seconds`."""

    def __init__(
        self,
        capacity: int,
        *,
        size: Callable[[V], int] = lambda _: 1,
        idle_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity, self.size = capacity, size
        self.idle_seconds, self.clock = idle_seconds, clock
        self._items: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The entry (now the most recently used), or None."""
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self._items[key] = (item[0], self.clock())
            return item[0]

    def put(self, key: K, value: V) -> bool:
        """Keep `value` (dropping the least recently used to make room); False when it alone is
        over the capacity and is not kept."""
        if self.size(value) > self.capacity:
            return False
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = (value, self.clock())
            while sum(self.size(v) for v, _ in self._items.values()) > self.capacity:
                dropped, _ = self._items.popitem(last=False)
                logger.info("dropped %s to stay within the budget", dropped)
        return True

    def values(self) -> list[V]:
        """Every entry, least recently used first (their use is not recorded)."""
        with self._lock:
            return [v for v, _ in self._items.values()]

    def release_idle(self) -> list[K]:
        """Drop the entries unused for `idle_seconds`; their keys."""
        if self.idle_seconds is None:
            return []
        now = self.clock()
        with self._lock:
            idle = [k for k, (_, used) in self._items.items() if now - used >= self.idle_seconds]
            for key in idle:
                del self._items[key]
        return idle

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()


class IdleReaper(threading.Thread):
    """A daemon thread that releases idle entries of an `Lru` every `every` seconds."""

    def __init__(self, cache: Lru[BaseKey, TrainingBase], every: float) -> None:
        super().__init__(name="quaff-warm-bases", daemon=True)
        self.cache, self.every = cache, every
        self.stopped = threading.Event()

    def run(self) -> None:
        """Release idle bases until stopped."""
        while not self.stopped.wait(self.every):
            for key in self.cache.release_idle():
                logger.info("released the idle warm base %s", key)
