"""The FastAPI application factory (never imports torch)."""

from __future__ import annotations

from fastapi import FastAPI

from api.docs import install_docs
from api.errors import RequestIdMiddleware, install_error_handlers
from api.guard import RequestGuardMiddleware
from api.lifecycle import configure, lifespan
from api.openapi import install_openapi
from api.poll_cache import PollCacheMiddleware
from api.routes import (
    chat,
    checkpoints,
    evaluations,
    events,
    files,
    graders,
    health,
    jobs,
    models,
    options,
    outlier_maps,
    ui,
    usage,
    webhooks,
)
from quaff_core import __version__
from store.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Quaff",
        summary="Fine-tune LLMs with Quaff quantized LoRA; OpenAI-compatible fine-tuning API.",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    configure(app, settings)
    install_error_handlers(app)
    for module in (health, files, jobs, options, events, checkpoints, models, outlier_maps):
        app.include_router(module.router)
    for module in (chat, evaluations):  # inference, forwarded to `quaff infer` nodes
        app.include_router(module.router)
    app.include_router(usage.router)
    app.include_router(webhooks.router)
    app.include_router(graders.router)
    install_docs(app)
    install_openapi(app)
    ui.install(app)
    app.add_middleware(
        PollCacheMiddleware,
        keys=lambda: app.state.key_cache,
        ttl=settings.poll_cache_seconds,
    )
    app.add_middleware(
        RequestGuardMiddleware,
        max_json_bytes=settings.max_json_bytes,
        max_pending=settings.max_pending_requests,
        retry_after=settings.retry_after_seconds,
        max_pending_per_key=settings.max_pending_per_key,
        shed_delay=settings.shed_delay_seconds,
    )
    app.add_middleware(RequestIdMiddleware)
    return app
