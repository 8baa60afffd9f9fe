"""Checkpoints: a safety checkpoint replaces the older safety ones; asked-for ones stay."""

from __future__ import annotations

from sqlalchemy.orm import Session

from store import jobs
from store.blobs import BlobStore
from store.checkpoints import list_checkpoints, prune_safety_checkpoints, save_checkpoint
from store.settings import Settings
from tests.helpers import KeyedProject, queued_job


def test_only_the_newest_safety_checkpoint_is_kept(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    job = queued_job(db_session, quaff_settings, keyed_project)
    jobs.claim_job(db_session, job.id, "w")
    asked = save_checkpoint(db_session, blobs, job, step=5, metrics={}, source=b"a")
    first = save_checkpoint(db_session, blobs, job, step=7, metrics={}, source=b"b", safety=True)
    second = save_checkpoint(db_session, blobs, job, step=9, metrics={}, source=b"c", safety=True)
    rows = list_checkpoints(db_session, job.id).rows
    assert [(r.step_number, r.safety) for r in rows] == [(9, True), (5, False)]
    assert not blobs.exists(first.blob_key)
    assert blobs.exists(second.blob_key)
    assert blobs.exists(asked.blob_key)
    assert prune_safety_checkpoints(db_session, blobs, job.id) == [9]
    assert [r.step_number for r in list_checkpoints(db_session, job.id).rows] == [5]
    assert not blobs.exists(second.blob_key)
