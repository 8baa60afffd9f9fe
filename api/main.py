"""The FastAPI application factory (never imports torch)."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import RequestIdMiddleware, install_error_handlers
from api.queue import JobQueue
from api.routes import (
    chat,
    checkpoints,
    evaluations,
    events,
    files,
    health,
    jobs,
    models,
    options,
    outlier_maps,
    ui,
)
from quaff_core import __version__
from store.blobs import BlobStore
from store.db import session_factory
from store.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # blobs and the embedded broker live here
    app = FastAPI(
        title="Quaff",
        summary="Fine-tune LLMs with Quaff quantized LoRA; OpenAI-compatible fine-tuning API.",
        version=__version__,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory(settings)
    app.state.blobs = BlobStore(settings.blob_dir)
    app.state.queue = JobQueue(settings.broker_url)
    install_error_handlers(app)
    for module in (health, files, jobs, options, events, checkpoints, models, outlier_maps):
        app.include_router(module.router)
    for module in (chat, evaluations):  # inference, forwarded to `quaff infer` nodes
        app.include_router(module.router)
    ui.install(app)
    app.add_middleware(RequestIdMiddleware)
    return app
