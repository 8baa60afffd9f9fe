"""store.pages: a page of rows past a cursor that must be an item of the list."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.errors import InvalidRequestError
from store.models import JobEvent
from store.pages import Cursor, page
from store.settings import Settings
from tests.helpers import KeyedProject, queued_job


def test_pages_walk_the_list_newest_first(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    query = select(JobEvent).where(JobEvent.job_id == job.id)
    first = page(db_session, query, JobEvent.id, Cursor(limit=2))
    assert first.has_more
    assert first.first_id == first.rows[0].id
    assert first.last_id == first.rows[1].id
    rest = page(db_session, query, JobEvent.id, Cursor(after=first.last_id, limit=2))
    assert not rest.has_more
    ids = [r.id for r in [*first.rows, *rest.rows]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 3
    oldest = page(db_session, query, JobEvent.id, Cursor(limit=1), ascending=True)
    assert oldest.first_id == ids[-1]


def test_a_cursor_outside_the_list_is_refused(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    one = queued_job(db_session, quaff_settings, keyed_project)
    other = queued_job(db_session, quaff_settings, keyed_project)
    query = select(JobEvent).where(JobEvent.job_id == one.id)
    elsewhere = page(db_session, select(JobEvent).where(JobEvent.job_id == other.id),
                     JobEvent.id, Cursor(limit=1)).first_id  # fmt: skip
    for after in ("garbage", elsewhere):
        with pytest.raises(InvalidRequestError) as exc:
            page(db_session, query, JobEvent.id, Cursor(after=after))
        assert exc.value.param == "after"
    empty = page(db_session, select(JobEvent).where(JobEvent.job_id == "none"), JobEvent.id,
                 Cursor())  # fmt: skip
    assert (empty.rows, empty.has_more, empty.first_id, empty.last_id) == ([], False, None, None)
