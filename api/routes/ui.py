"""The dashboard at /ui: the built front end (source in ui/, bundle in api/ui_dist/).

Hashed assets are served as files; every other /ui path gets index.html and is routed client-side.
The page talks to the same /v1 API with the user's key, so it needs no route or auth of its own.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.errors import error_response

UI_DIST = Path(__file__).resolve().parents[1] / "ui_dist"
PREFIX = "/ui"
# Only this origin: nothing from a CDN, no inline script; Preact and uPlot style through the CSSOM.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
IMMUTABLE = "public, max-age=31536000, immutable"


class HashedAssets(StaticFiles):
    """Vite's content-hashed files: a changed file gets a new name, so they cache for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def index_page(path: str = "") -> Response:
    """index.html for a dashboard route (`path` is routed by the page itself)."""
    page = UI_DIST / "index.html"
    if not page.is_file():
        return error_response(
            503,
            f"The dashboard is not built ({page} is missing): run `make ui`.",
            code="ui_missing",
        )
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP}
    return FileResponse(page, media_type="text/html", headers=headers)


def root() -> RedirectResponse:
    """The server's root opens the dashboard."""
    return RedirectResponse(f"{PREFIX}/")


def install(app: FastAPI) -> None:
    """Mount the assets first, then index.html for /ui and every other path under it."""
    if (UI_DIST / "assets").is_dir():
        app.mount(f"{PREFIX}/assets", HashedAssets(directory=UI_DIST / "assets"), name="ui-assets")
    app.add_api_route(PREFIX, index_page, include_in_schema=False)
    app.add_api_route(PREFIX + "/{path:path}", index_page, include_in_schema=False)
    app.add_api_route("/", root, include_in_schema=False)
