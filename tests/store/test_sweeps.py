"""Sweeps: orphaned temporary files and rowless blobs go after the grace period; expired files
are purged unless a live job trains on them."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy.orm import Session

from store.blobs import BlobStore
from store.errors import NotFoundError
from store.files import get_file, new_upload, register_upload
from store.models import File
from store.settings import Settings
from store.sweeps import purge_expired_files, sweep_orphans
from tests.helpers import KeyedProject, chat_jsonl, queued_job, store_training_file


def _age(path: os.PathLike[str], seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_sweep_removes_old_orphans_and_keeps_the_rest(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    kept = store_training_file(db_session, quaff_settings, keyed_project.project.id, b"x")
    orphan = blobs.write_bytes("files/file-orphan.jsonl", b"lost")
    fresh = blobs.write_bytes("checkpoints/ftckpt-fresh.tar.gz", b"being committed")
    writer = blobs.writer("checkpoints/ftckpt-cut.tar.gz")
    writer.write(b"partial")
    part = next(quaff_settings.blob_dir.glob("checkpoints/.tmp-*.part"))
    for path in (blobs.path(kept.blob_key), blobs.path(orphan.key), part):
        _age(path, quaff_settings.orphan_grace_seconds + 60)
    report = sweep_orphans(quaff_settings)
    assert report.blobs == [orphan.key]
    assert report.parts == [part.relative_to(quaff_settings.blob_dir).as_posix()]
    assert blobs.exists(kept.blob_key)
    assert blobs.exists(fresh.key)
    assert not part.exists()


def test_expired_files_are_hidden_then_purged_unless_in_use(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    blobs = BlobStore(quaff_settings.blob_dir)
    project_id = keyed_project.project.id
    file_id, key = new_upload()
    row = register_upload(
        db_session, blobs, project_id, file_id=file_id, blob=blobs.write_bytes(key, chat_jsonl(10)),
        filename="t.jsonl", purpose="fine-tune", expires_after=3600,
    )  # fmt: skip
    assert row.expires_at == row.created_at + 3600
    job = queued_job(db_session, quaff_settings, keyed_project)
    used = db_session.get(File, job.training_file_id)
    assert used is not None
    for expired in (row, used):
        expired.expires_at = 1
    db_session.commit()
    purged = purge_expired_files(quaff_settings)  # the database is shared: others' may go too
    assert row.id in purged
    assert used.id not in purged
    assert not blobs.exists(key)
    db_session.expire_all()
    assert db_session.get(File, used.id) is not None  # the queued job still needs it
    with pytest.raises(NotFoundError):
        get_file(db_session, project_id, used.id)
