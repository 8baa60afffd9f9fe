"""Leases: claim, take over only stale jobs, heartbeat renewals, and the sweeper."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import jobs
from store.ids import now_s
from store.models import Job, JobEvent
from store.queue import FINE_TUNE_QUEUE, FINE_TUNE_TASK
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl, store_training_file
from worker.lease import acquire, renew, sweep, take_over


class Recorder:
    """Collects published tasks instead of talking to a broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], str]] = []

    def send_task(self, name: str, args: list[str], queue: str) -> Any:
        self.sent.append((name, args, queue))
        return None


def queued_job(session: Session, settings: Settings, keyed: KeyedProject) -> Job:
    training = store_training_file(session, settings, keyed.project.id, chat_jsonl(10))
    body = {"model": "tiny-llama", "training_file": training.id}
    return jobs.create_job(session, settings, keyed.project.id, body)


def age_heartbeat(session: Session, job: Job, seconds: int) -> None:
    job.heartbeat_at = now_s() - seconds
    session.commit()


def test_acquire_claims_a_queued_job_once(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    claimed = acquire(db_session, job.id, "a:1", quaff_settings)
    assert claimed is not None
    assert (claimed.status, claimed.worker_id, claimed.attempts) == ("running", "a:1", 1)
    assert acquire(db_session, job.id, "b:2", quaff_settings) is None


def test_take_over_needs_a_stale_heartbeat(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"worker_lease_seconds": 60.0})
    job = queued_job(db_session, settings, keyed_project)
    jobs.claim_job(db_session, job.id, "a:1")
    assert take_over(db_session, job.id, "b:2", settings) is None
    age_heartbeat(db_session, job, 61)
    taken = take_over(db_session, job.id, "b:2", settings)
    assert taken is not None
    assert (taken.status, taken.worker_id, taken.attempts) == ("running", "b:2", 2)
    texts = db_session.scalars(select(JobEvent.message).where(JobEvent.job_id == job.id)).all()
    assert "Worker a:1 stopped responding; worker b:2 took over the job" in texts
    assert take_over(db_session, job.id, "c:3", settings) is None


def test_renew_only_for_the_lease_holder(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "a:1")
    assert renew(quaff_settings, job.id, "a:1") is True
    assert renew(quaff_settings, job.id, "b:2") is False
    jobs.cancel_job(db_session, job)
    assert renew(quaff_settings, job.id, "a:1") is False


def test_sweep_requeues_stale_running_and_at_start_queued_jobs(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"worker_lease_seconds": 60.0})
    stale = queued_job(db_session, settings, keyed_project)
    live = queued_job(db_session, settings, keyed_project)
    waiting = queued_job(db_session, settings, keyed_project)
    jobs.claim_job(db_session, stale.id, "a:1")
    jobs.claim_job(db_session, live.id, "b:2")
    age_heartbeat(db_session, stale, 120)
    periodic, startup = Recorder(), Recorder()
    found = sweep(settings, periodic, include_queued=False)
    assert stale.id in found
    assert live.id not in found
    assert waiting.id not in found
    assert (FINE_TUNE_TASK, [stale.id], FINE_TUNE_QUEUE) in periodic.sent
    found = sweep(settings, startup, include_queued=True)
    assert {stale.id, waiting.id} <= set(found)
    assert live.id not in found


def _ended_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_take_over_is_at_once_when_the_local_worker_process_has_ended(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"worker_lease_seconds": 600.0})
    host = socket.gethostname()
    alive, ended = f"{host}:{os.getpid()}", f"{host}:{_ended_pid()}"
    job = queued_job(db_session, settings, keyed_project)
    jobs.claim_job(db_session, job.id, alive)
    assert take_over(db_session, job.id, "b:2", settings) is None  # its holder still runs
    job.worker_id = ended  # the heartbeat is fresh, but the process holding it is gone
    db_session.commit()
    taken = take_over(db_session, job.id, f"{host}:1", settings)
    assert taken is not None
    assert (taken.worker_id, taken.attempts) == (f"{host}:1", 2)
    event = db_session.scalars(
        select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id.desc())
    ).first()
    assert event is not None
    assert event.kind == "worker_took_over"
    assert event.message == f"Worker {ended} has ended; worker {host}:1 took over the job"


def test_sweep_requeues_a_job_whose_local_worker_ended_once_per_holder(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"worker_lease_seconds": 600.0})
    host = socket.gethostname()
    ended = queued_job(db_session, settings, keyed_project)
    alive = queued_job(db_session, settings, keyed_project)
    remote = queued_job(db_session, settings, keyed_project)
    jobs.claim_job(db_session, ended.id, f"{host}:{_ended_pid()}")
    jobs.claim_job(db_session, alive.id, f"{host}:{os.getpid()}")
    jobs.claim_job(db_session, remote.id, f"elsewhere:{_ended_pid()}")
    sender, sent = Recorder(), dict[str, tuple[str | None, float]]()
    # the database is shared with other tests: look at this test's jobs only
    mine = {ended.id, alive.id, remote.id}

    def swept() -> list[str]:
        return [j for j in sweep(settings, sender, include_queued=False, sent=sent) if j in mine]

    assert swept() == [ended.id]
    assert swept() == []  # sent already
    assert [s for s in sender.sent if s[1][0] in mine] == [
        (FINE_TUNE_TASK, [ended.id], FINE_TUNE_QUEUE)
    ]
