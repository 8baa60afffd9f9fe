"""store.job_states: the one transition table, enforced with compare-and-set."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from store import jobs
from store.errors import InvalidRequestError
from store.settings import Settings
from tests.helpers import KeyedProject, queued_job


def test_every_transition_in_the_table_and_no_other(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    for old, allowed in jobs.TRANSITIONS.items():
        for new in jobs.TRANSITIONS:
            job.status = old
            db_session.commit()
            if new in allowed:
                jobs.transition(db_session, job, new)
                assert job.status == new
            else:
                with pytest.raises(InvalidRequestError, match=f"is {old} and cannot become {new}"):
                    jobs.transition(db_session, job, new)
                assert job.status == old
            db_session.rollback()


def test_cancelling_a_finished_job_is_refused(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.cancel_job(db_session, job)
    with pytest.raises(InvalidRequestError) as exc:
        jobs.cancel_job(db_session, job)
    assert exc.value.status_code == 400
    assert exc.value.code == "invalid_job_state"
    assert "already finished" in exc.value.message
