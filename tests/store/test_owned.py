"""store.owned: one of the project's objects by id, or the one not-found error."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from store.errors import NotFoundError
from store.files import get_file
from store.ids import now_s
from store.models import Job
from store.owned import get_owned
from store.settings import Settings
from tests.helpers import KeyedProject, make_project, queued_job


def test_the_projects_object_is_found(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    assert get_owned(db_session, Job, job.id, keyed_project.project.id) is job


@pytest.mark.parametrize("object_id", ["ftjob-missing", 7, None])
def test_a_missing_id_is_not_found(
    db_session: Session, keyed_project: KeyedProject, object_id: object
) -> None:
    with pytest.raises(NotFoundError) as exc:
        get_owned(db_session, Job, object_id, keyed_project.project.id, param="job")
    assert (exc.value.status_code, exc.value.param) == (404, "job")
    assert exc.value.message == f"No fine-tuning job found with id '{object_id}'."


def test_another_projects_object_is_not_found(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    other = make_project(db_session)
    with pytest.raises(NotFoundError):
        get_owned(db_session, Job, job.id, other.project.id)


def test_an_expired_file_is_not_found(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    project_id = keyed_project.project.id
    row = get_file(db_session, project_id, job.training_file_id)
    row.expires_at = now_s() - 1
    db_session.commit()
    with pytest.raises(NotFoundError) as exc:
        get_file(db_session, project_id, row.id, param="file")
    assert exc.value.param == "file"
