"""Admission to the database: one slot per pooled connection, bounded waits, then 503.

A request holds a slot while it holds its session, so no more sessions are open than the pool has
connections and no worker thread ever waits on the pool; a request that cannot get a slot within
`request_wait_seconds` (or finds `max_waiting_requests` already waiting) gets a 503 with
`Retry-After` instead of a hang.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class ServiceBusyError(Exception):
    """No database slot came free in time; rendered as 503 `server_error` with `Retry-After`."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"the server is busy: no database slot came free within {waited:g}s")
        self.waited = waited


class Gate:
    """A fair counting gate for coroutines of one event loop (FIFO hand-over of slots)."""

    def __init__(self, slots: int, *, wait_seconds: float, max_waiting: int) -> None:
        if slots < 1:
            raise ValueError(f"a gate needs at least one slot, got {slots}")
        self.slots, self.wait_seconds, self.max_waiting = slots, wait_seconds, max_waiting
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self.slots - self._free

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return sum(1 for f in self._waiters if not f.done())

    async def acquire(self) -> None:
        """Take a slot, waiting at most `wait_seconds`; ServiceBusyError otherwise."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        if self.waiting >= self.max_waiting:
            raise ServiceBusyError(0.0)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait_seconds):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as the wait ended: pass it on
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise ServiceBusyError(self.wait_seconds) from None
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        """Give a slot back: to the longest waiter, or to the pool of free slots."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def run(self, func: Callable[..., T], *args: object) -> T:
        """Run the blocking `func(*args)` in a worker thread while holding a slot."""
        async with self.slot():
            return await run_in_threadpool(func, *args)
