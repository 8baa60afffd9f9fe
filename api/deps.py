"""Request dependencies as `Annotated` aliases: settings, session, blobs, queue, project."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from api.queue import JobQueue
from store.auth import authenticate
from store.blobs import BlobStore
from store.models import Project
from store.settings import Settings


def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session for this request, closed afterwards."""
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.close()


def get_blobs(request: Request) -> BlobStore:
    """The app's blob store."""
    blobs: BlobStore = request.app.state.blobs
    return blobs


def get_queue(request: Request) -> JobQueue:
    """The app's Celery producer."""
    queue: JobQueue = request.app.state.queue
    return queue


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
BlobsDep = Annotated[BlobStore, Depends(get_blobs)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]


def get_current_project(request: Request, session: SessionDep) -> Project:
    """The project of the bearer key; 401 `invalid_api_key` when missing, unknown or revoked."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else ""
    return authenticate(session, key or None)


CurrentProject = Annotated[Project, Depends(get_current_project)]
