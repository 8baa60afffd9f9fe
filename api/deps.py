"""Request dependencies as `Annotated` aliases: settings, gate, session, blobs, queue, project.

Every dependency is `async` (a sync one would cost a trip to a worker thread). Handlers do their
store work through `api.db.DbDep` (one thread call, one session, one gate slot). `SessionDep` is
a session held for the whole handler under a gate slot, for handlers that need one; it is closed
as soon as the handler returns, before a streamed body is sent. `CurrentProject` comes from the
key cache, or on a miss from a short session of its own (never while holding another).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.auth import KeyCache, Principal
from api.gate import Gate
from api.queue import JobQueue
from store.auth import authenticate, hash_key
from store.blobs import BlobStore
from store.settings import Settings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="A Quaff API key (`quaff keys create`): `Authorization: Bearer sk-quaff-...`.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_gate(request: Request) -> Gate:
    """The app's database admission gate."""
    gate: Gate = request.app.state.gate
    return gate


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    """The app's session factory."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    return factory


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session, under a gate slot; closed (in a thread) when the handler returns."""
    gate: Gate = request.app.state.gate
    async with gate.slot():
        session = request.app.state.session_factory()
        try:
            yield session
        finally:
            await run_in_threadpool(session.close)


async def get_blobs(request: Request) -> BlobStore:
    """The app's blob store."""
    blobs: BlobStore = request.app.state.blobs
    return blobs


async def get_queue(request: Request) -> JobQueue:
    """The app's Celery producer."""
    queue: JobQueue = request.app.state.queue
    return queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
GateDep = Annotated[Gate, Depends(get_gate)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]


def _key(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials.strip() or None if credentials else None


def _cache(request: Request) -> KeyCache:
    cache: KeyCache = request.app.state.key_cache
    return cache


def _lookup(session: Session, key: str | None) -> Principal:
    """Authenticate in `session` (AuthenticationError when missing, unknown or revoked)."""
    project = authenticate(session, key)
    return Principal.of(project, hash_key(key or ""))


def _lookup_in_own_session(factory: sessionmaker[Session], key: str | None) -> Principal:
    with factory() as session:
        return _lookup(session, key)


async def get_current_project(request: Request, credentials: Credentials) -> Principal:
    """The bearer key's project; 401 `invalid_api_key` when missing, unknown or revoked."""
    key = _key(credentials)
    cached = _cache(request).get(hash_key(key)) if key else None
    if cached is not None:
        return cached
    factory: sessionmaker[Session] = request.app.state.session_factory
    gate: Gate = request.app.state.gate
    principal = await gate.run(_lookup_in_own_session, factory, key)
    _cache(request).put(principal)
    return principal


CurrentProject = Annotated[Principal, Depends(get_current_project)]
