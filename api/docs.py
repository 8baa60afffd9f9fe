"""`/docs` (Swagger UI) and `/redoc` with their assets served from the installed package, so the
pages work offline; the assets come from `fastapi-standalone-docs` (files only, no patching)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"


def assets_dir() -> Path:
    """The packaged Swagger UI / ReDoc files."""
    return Path(str(files("fastapi_standalone_docs") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve the two documentation pages and their assets (the app has docs_url=None)."""
    root = assets_dir()
    app.mount(ASSETS_URL, StaticFiles(directory=root), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/fastapi/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/fastapi/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/redoc/logo-mini.svg", include_in_schema=False)
    def redoc_logo() -> FileResponse:
        return FileResponse(root / "redoc" / "logo-mini.svg", media_type="image/svg+xml")
