"""The app's shared state and its lifespan: gate, key cache, stream limits, event hub, sweeps."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from api.auth import KeyCache
from api.gate import Gate
from api.queue import JobQueue
from api.streams import EventHub, StreamCounter
from store import files
from store.blobs import BlobStore
from store.db import private_session, session_factory
from store.settings import Settings
from store.sweeps import sweep_orphans

logger = logging.getLogger(__name__)


def configure(app: FastAPI, settings: Settings) -> None:
    """Attach what requests share to `app.state` (sized together from the settings)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # blobs and the embedded broker live here
    app.state.settings = settings
    app.state.session_factory = session_factory(settings)
    app.state.blobs = BlobStore(settings.blob_dir)
    app.state.queue = JobQueue(settings.broker_url)
    app.state.gate = Gate(
        settings.db_pool_size,
        wait_seconds=settings.request_wait_seconds,
        max_waiting=settings.max_waiting_requests,
    )
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.state.streams = StreamCounter(settings.max_streams_per_key)
    app.state.hub = EventHub(app.state.session_factory, app.state.gate, settings.event_poll_seconds)


def _validate_pending(settings: Settings, blobs: BlobStore) -> None:
    """Validate the uploads whose validation an earlier API process did not finish (on sessions
    of their own, so that no request's connection is taken)."""
    with private_session(settings) as session:
        pending = files.pending_uploads(session)
    for file_id in pending:
        files.finish_validation(lambda: private_session(settings), blobs, file_id)


async def _sweep(app: FastAPI, settings: Settings) -> None:
    try:
        await run_in_threadpool(sweep_orphans, settings)
        await run_in_threadpool(_validate_pending, settings, app.state.blobs)
    except Exception:  # a failed clean-up must not stop the API
        logger.exception("start-up sweep (orphaned blobs, unvalidated uploads) failed")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Size the thread pool, start the event hub and the start-up sweep; stop them at the end."""
    settings: Settings = app.state.settings
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
    tasks = [asyncio.create_task(app.state.hub.run()), asyncio.create_task(_sweep(app, settings))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
