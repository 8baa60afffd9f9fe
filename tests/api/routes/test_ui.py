"""/ui: the committed dashboard build, index.html for client routes, assets cached, no CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from api.routes.ui import UI_DIST


def _asset_paths(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', html)


def test_index_is_served_for_the_dashboard_routes_without_a_key(client: TestClient) -> None:
    for path in ("/ui", "/ui/", "/ui/jobs/ftjob-abc", "/ui/maps/om-1", "/ui/playground"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert response.headers["cache-control"] == "no-cache"
        assert response.text == (UI_DIST / "index.html").read_text()


def test_index_loads_only_same_origin_assets(client: TestClient) -> None:
    response = client.get("/ui/")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self';" in csp
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", response.text)
    assets = _asset_paths(response.text)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)


def test_assets_are_cached_for_a_year(client: TestClient) -> None:
    for path in _asset_paths(client.get("/ui/").text):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        kind = "javascript" if path.endswith(".js") else "css"
        assert kind in response.headers["content-type"]


def test_read_missing_asset_not_found(client: TestClient) -> None:
    response = client.get("/ui/assets/missing-0000.js")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert response.json()["error"]["code"] == "unknown_url"


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"


def test_api_errors_keep_their_envelope_next_to_the_dashboard(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"
