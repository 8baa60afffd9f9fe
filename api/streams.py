"""Server-Sent Event streams of job events: async, one shared poll, bounded per key.

Streams hold no database session while they wait. One `EventHub` task asks the store, once per
`event_poll_seconds` for all open streams together, which of their jobs have a newer event, and
wakes only those streams; each then reads its new events in a short session under a gate slot.
A stream also looks on its own every `auth_cache_seconds` (sending a keep-alive comment every
`stream_keepalive_seconds`); each look checks its API key too, so a stream of a key revoked
meanwhile ends with an `invalid_api_key` error frame within the time a cached key lives.
Starlette cancels a stream whose client went away, which runs its clean-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.gate import Gate, ServiceBusyError
from api.schemas import event_object
from store import events
from store.job_status import TERMINAL
from store.models import ApiKey, Job, JobEvent
from store.settings import Settings

logger = logging.getLogger(__name__)

BATCH = 500
IN_LIST = 500
REVOKED_FRAME = (
    b'data: {"error": {"message": "The API key of this stream was revoked.", '
    b'"type": "authentication_error", "param": null, "code": "invalid_api_key"}}\n\n'
)


class TooManyStreamsError(Exception):
    """The key holds `max_streams_per_key` streams already; rendered as 429 + Retry-After."""


class StreamCounter:
    """Open streams per API key hash, bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: defaultdict[str, int] = defaultdict(int)

    def claim(self, key_hash: str) -> StreamClaim:
        """One more stream for the key, or TooManyStreamsError."""
        if self.open[key_hash] >= self.limit:
            raise TooManyStreamsError(f"this API key already holds {self.limit} event streams")
        self.open[key_hash] += 1
        return StreamClaim(self, key_hash)


@dataclass
class StreamClaim:
    """A claimed stream; `release()` may be called more than once."""

    counter: StreamCounter
    key_hash: str
    released: bool = False

    def release(self) -> None:
        """Give the stream back (idempotent)."""
        if self.released:
            return
        self.released = True
        self.counter.open[self.key_hash] -= 1
        if self.counter.open[self.key_hash] <= 0:
            del self.counter.open[self.key_hash]


def _newest(factory: sessionmaker[Session], job_ids: list[str]) -> dict[str, str]:
    """The newest event id of each job (jobs without events are left out)."""
    newest: dict[str, str] = {}
    with factory() as session:
        for start in range(0, len(job_ids), IN_LIST):
            chunk = job_ids[start : start + IN_LIST]
            rows = session.execute(
                select(JobEvent.job_id, func.max(JobEvent.id))
                .where(JobEvent.job_id.in_(chunk))
                .group_by(JobEvent.job_id)
            )
            newest.update({job_id: str(last) for job_id, last in rows})
    return newest


class EventHub:
    """Wakes the streams of jobs that got new events; one store query per poll for all."""

    def __init__(self, factory: sessionmaker[Session], gate: Gate, poll_seconds: float) -> None:
        self.factory, self.gate, self.poll_seconds = factory, gate, poll_seconds
        self.running = False
        self._streams: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._newest: dict[str, str] = {}

    def subscribe(self, job_id: str) -> asyncio.Event:
        """A wake-up event for one stream of `job_id`."""
        wake = asyncio.Event()
        self._streams[job_id].add(wake)
        return wake

    def unsubscribe(self, job_id: str, wake: asyncio.Event) -> None:
        """Forget a stream."""
        streams = self._streams.get(job_id)
        if streams is not None:
            streams.discard(wake)
            if not streams:
                del self._streams[job_id]
                self._newest.pop(job_id, None)

    async def run(self) -> None:
        """Poll until cancelled (the app's lifespan runs this as a task)."""
        self.running = True
        try:
            while True:
                await asyncio.sleep(self.poll_seconds)
                if self._streams:
                    await self.tick()
        finally:
            self.running = False

    async def tick(self) -> None:
        """One poll: wake the streams whose job's newest event changed."""
        job_ids = list(self._streams)
        try:
            newest = await self.gate.run(_newest, self.factory, job_ids)
        except (ServiceBusyError, SQLAlchemyError) as exc:
            logger.warning("event hub poll skipped: %s", exc)
            return
        for job_id, last in newest.items():
            if self._newest.get(job_id) != last:
                self._newest[job_id] = last
                for wake in self._streams.get(job_id, ()):
                    wake.set()


def _fetch(
    factory: sessionmaker[Session], job_id: str, cursor: str | None, key_hash: str
) -> tuple[list[bytes], str | None, bool]:
    """Up to BATCH events after `cursor` as SSE frames, the new cursor, and whether it ended
    (a revoked key ends it with an error frame).

    The status is read first: the terminal transition commits its event with it, so a job seen
    terminal has that event in the read that follows.
    """
    with factory() as session:
        live = select(ApiKey.id).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        if session.scalar(live) is None:
            return [REVOKED_FRAME], cursor, True
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        rows = events.events_since(session, job_id, cursor, limit=BATCH)
        frames = [f"data: {event_object(r).model_dump_json()}\n\n".encode() for r in rows]
    cursor = rows[-1].id if rows else cursor
    return frames, cursor, (status is None or status in TERMINAL) and len(rows) < BATCH


async def event_stream(
    *,
    hub: EventHub,
    settings: Settings,
    job_id: str,
    after: str | None,
    claim: StreamClaim,
) -> AsyncIterator[bytes]:
    """`data: {event}` frames oldest first from `after`, until the job has ended and is drained."""
    cursor, clock = after, asyncio.get_running_loop().time
    wake = hub.subscribe(job_id)
    fallback = settings.event_poll_seconds if not hub.running else settings.stream_keepalive_seconds
    if settings.auth_cache_seconds > 0:
        fallback = min(fallback, settings.auth_cache_seconds)
    quiet_since = clock()
    try:
        while True:
            wake.clear()
            try:
                frames, cursor, finished = await hub.gate.run(
                    _fetch, hub.factory, job_id, cursor, claim.key_hash
                )
            except ServiceBusyError:
                frames, finished = [], False
            for frame in frames:
                yield frame
            if frames:
                quiet_since = clock()
            if finished:
                return
            if len(frames) == BATCH:
                continue
            try:
                async with asyncio.timeout(fallback):
                    await wake.wait()
            except TimeoutError:
                if clock() - quiet_since >= settings.stream_keepalive_seconds:
                    quiet_since = clock()
                    yield b": keep-alive\n\n"
    finally:
        hub.unsubscribe(job_id, wake)
        claim.release()
