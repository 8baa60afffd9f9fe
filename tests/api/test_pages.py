"""Every paged list: `after` and `limit` read in one place; a cursor that names no item of the
list is a 400 naming `after` (as OpenAI answers it), never an empty page."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.helpers import KeyedProject, created_job, make_project

LISTS = (
    "/v1/files",
    "/v1/fine_tuning/jobs",
    "/v1/outlier_maps",
    "/v1/fine_tuning/jobs/{job}/events",
    "/v1/fine_tuning/jobs/{job}/checkpoints",
    "/v1/fine_tuning/jobs/{job}/evaluations",
)


@pytest.mark.parametrize("path", LISTS)
def test_an_unknown_cursor_is_a_400_naming_after(
    client: TestClient, keyed_project: KeyedProject, path: str
) -> None:
    job = created_job(client, keyed_project)
    url = path.format(job=job["id"])
    response = client.get(f"{url}?after=garbage", headers=keyed_project.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "after")
    assert "garbage" in error["message"]


@pytest.mark.parametrize("path", LISTS)
def test_a_limit_out_of_range_is_a_400_naming_limit(
    client: TestClient, keyed_project: KeyedProject, path: str
) -> None:
    job = created_job(client, keyed_project)
    response = client.get(f"{path.format(job=job['id'])}?limit=0", headers=keyed_project.headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "limit"


def test_another_projects_id_is_no_cursor(
    client: TestClient, keyed_project: KeyedProject, db_session: Session
) -> None:
    theirs = created_job(client, make_project(db_session))
    created_job(client, keyed_project)
    url = f"/v1/fine_tuning/jobs?after={theirs['id']}"
    response = client.get(url, headers=keyed_project.headers)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "after"


def test_pages_follow_each_other_with_their_ids(
    client: TestClient, keyed_project: KeyedProject
) -> None:
    job = created_job(client, keyed_project)
    url = f"/v1/fine_tuning/jobs/{job['id']}/events"
    first = client.get(f"{url}?limit=2", headers=keyed_project.headers).json()
    assert len(first["data"]) == 2
    assert first["has_more"] is True
    rest = client.get(f"{url}?after={first['data'][-1]['id']}", headers=keyed_project.headers)
    assert rest.status_code == 200
    ids = [e["id"] for e in first["data"] + rest.json()["data"]]
    assert len(ids) == len(set(ids)) == 3  # created, validating files, queued
    files = client.get("/v1/files?limit=1", headers=keyed_project.headers).json()
    assert files["first_id"] == files["last_id"] == files["data"][0]["id"]
