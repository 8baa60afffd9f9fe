"""Job leases: claim or take over a job, keep its heartbeat fresh, re-queue jobs of dead workers."""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path
from typing import Protocol

from kombu.exceptions import KombuError
from sqlalchemy import or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from store import jobs
from store.db import make_engine, session_scope
from store.events import ServiceEvent, add_event
from store.ids import now_s
from store.models import Job
from store.queue import FINE_TUNE_QUEUE, FINE_TUNE_TASK
from store.settings import Settings
from store.sweeps import purge_expired_files, sweep_orphans

logger = logging.getLogger(__name__)

# Set in the worker's main process when it is asked to stop; created before the pool forks, so the
# process running a job sees it too and hands the job back at the next step instead of finishing.
STOPPING = multiprocessing.Event()


class TaskSender(Protocol):
    """What the sweeper needs from a Celery app."""

    def send_task(self, name: str, args: list[str], queue: str) -> object:
        """Publish a task by name."""


def worker_identity() -> str:
    """`host:pid`, stored on the job row while this process holds its lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_gone(worker_id: str | None) -> bool:
    """Whether the lease holder `host:pid` is a process of this host that has ended (a zombie
    counts as ended). A holder on another host is never judged here: its lease must expire."""
    host, _, pid = (worker_id or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except (OSError, ValueError, IndexError):
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def stale_cutoff(settings: Settings) -> int:
    """Heartbeats older than this (unix seconds) belong to a dead worker."""
    return now_s() - int(settings.worker_lease_seconds)


def take_over(session: Session, job_id: str, worker_id: str, settings: Settings) -> Job | None:
    """Take a `running` job whose worker stopped heartbeating, or whose worker process on this
    host has ended (at once: no need to wait for its lease), by compare-and-set; else None."""
    job = session.get(Job, job_id)
    if job is None or job.status != "running":
        return None
    previous = job.worker_id
    gone = previous is not None and previous != worker_id and holder_gone(previous)
    free = (
        Job.worker_id == previous
        if gone
        else or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_cutoff(settings))
    )
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", free)
        .values(worker_id=worker_id, heartbeat_at=now_s(), attempts=Job.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        session.rollback()
        return None
    why = "has ended" if gone else "stopped responding"
    add_event(
        session,
        job_id,
        f"Worker {previous or 'unknown'} {why}; worker {worker_id} took over the job",
        level="warn",
        kind=ServiceEvent.WORKER_TOOK_OVER,
        data={"previous": previous, "worker": worker_id},
    )
    session.commit()
    session.refresh(job)
    return job


def acquire(session: Session, job_id: str, worker_id: str, settings: Settings) -> Job | None:
    """Claim a queued job or take over an abandoned running one; None means: leave it alone."""
    job = session.get(Job, job_id)
    if job is None:
        logger.warning("job %s does not exist; dropping its task", job_id)
        return None
    if job.status == "queued":
        return jobs.claim_job(session, job_id, worker_id)
    if job.status == "running":
        return take_over(session, job_id, worker_id, settings)
    logger.info("job %s is %s; nothing to do", job_id, job.status)
    return None


def renew(settings: Settings, job_id: str, worker_id: str) -> bool:
    """Refresh the heartbeat if this worker still holds the running job's lease."""
    with session_scope(settings) as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.worker_id == worker_id,
                Job.status.in_(("running", "paused")),
            )
            .values(heartbeat_at=now_s())
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return getattr(result, "rowcount", 0) == 1


class Heartbeat(threading.Thread):
    """Renews a job's lease every `worker_heartbeat_seconds` until stopped or the lease is gone."""

    def __init__(self, settings: Settings, job_id: str, worker_id: str) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.settings, self.job_id, self.worker_id = settings, job_id, worker_id
        self.lost = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Loop until stopped; a refused renewal means the job ended or another worker took it."""
        while not self._stop_event.wait(self.settings.worker_heartbeat_seconds):
            try:
                if not renew(self.settings, self.job_id, self.worker_id):
                    self.lost.set()
                    return
            except SQLAlchemyError as exc:
                logger.warning("heartbeat for %s failed: %s", self.job_id, exc)

    def stop(self) -> None:
        """Stop renewing and wait for the thread."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=10)


def sweep(
    settings: Settings,
    sender: TaskSender,
    *,
    include_queued: bool,
    sent: dict[str, tuple[str | None, float]] | None = None,
) -> list[str]:
    """Re-publish tasks for running jobs with stale heartbeats or whose worker process on this
    host has ended (and queued ones, at start-up). `sent` remembers, per job, the holder it was
    published for and when: not again for that holder within half a lease."""
    statuses = ["running", "queued"] if include_queued else ["running"]
    # A private engine, closed at once: the worker's main process keeps no database connection
    # that a pool process forked later could inherit and share.
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(
                select(Job.id, Job.status, Job.heartbeat_at, Job.worker_id).where(
                    Job.status.in_(statuses)
                )
            ).all()
    finally:
        engine.dispose()
    cutoff, sent = stale_cutoff(settings), {} if sent is None else sent
    now, again = time.monotonic(), settings.worker_lease_seconds / 2

    def due(job_id: str, holder: str | None) -> bool:
        last = sent.get(job_id)
        return last is None or last[0] != holder or now - last[1] >= again

    found = [
        job_id
        for job_id, status, beat, holder in rows
        if status == "queued"
        or ((beat is None or beat < cutoff or holder_gone(holder)) and due(job_id, holder))
    ]
    holders = {job_id: holder for job_id, _status, _beat, holder in rows}
    for job_id in found:
        sender.send_task(FINE_TUNE_TASK, args=[job_id], queue=FINE_TUNE_QUEUE)
        sent[job_id] = (holders[job_id], now)
        logger.info("sweeper re-queued job %s", job_id)
    return found


class Sweeper(threading.Thread):
    """Runs `sweep` at start-up (queued jobs too) and then every heartbeat interval (at most half
    a lease: jobs of ended local workers, stale running jobs); each round also purges expired
    files, and the first one removes orphaned blobs."""

    def __init__(self, settings: Settings, sender: TaskSender) -> None:
        super().__init__(name="quaff-lease-sweeper", daemon=True)
        self.settings, self.sender = settings, sender
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Sweep until stopped; errors are logged and retried on the next round."""
        first, sent = True, dict[str, tuple[str | None, float]]()
        lease = self.settings.worker_lease_seconds
        interval = max(1.0, min(lease / 2, self.settings.worker_heartbeat_seconds))
        while True:
            try:
                sweep(self.settings, self.sender, include_queued=first, sent=sent)
                purge_expired_files(self.settings)
                if first:
                    sweep_orphans(self.settings)
                first = False
            except (SQLAlchemyError, KombuError, OSError) as exc:
                logger.warning("lease sweep failed: %s", exc)
            if self._stop_event.wait(interval):
                return

    def stop(self) -> None:
        """Stop sweeping."""
        self._stop_event.set()


def hand_back(session: Session, job: Job, worker_id: str, step: int) -> bool:
    """A stopping worker returns its running job to the queue, via `paused`; else False."""
    if jobs.current_status(session, job) != "running" or job.worker_id != worker_id:
        return False
    jobs.transition(
        session,
        job,
        "paused",
        reason=f"Worker {worker_id} is shutting down; checkpoint saved at step {step}",
        notify=False,
    )
    jobs.transition(session, job, "queued", reason="Job re-queued for another worker")
    session.commit()
    return True
