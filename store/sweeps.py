"""Clean-ups: expired uploads (the worker's sweeper) and orphaned blobs (at start-up).

An orphan is a temporary `.part` file or a blob that no row points at (a process died between
the two atomic steps blob-then-row). Only orphans older than `orphan_grace_seconds` go, so a
sweep never removes the blob of an upload or checkpoint another process is committing now.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.blob_refs import referenced
from store.blobs import BlobStore, delete_unreferenced
from store.db import private_session
from store.files import live_user
from store.ids import now_s
from store.models import File
from store.settings import Settings

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"


@dataclass
class SweepReport:
    """What a sweep removed."""

    parts: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _old_files(root: Path, cutoff: float) -> tuple[list[Path], list[str]]:
    """Temporary files and blob keys under `root` last modified before `cutoff`."""
    parts: list[Path] = []
    keys: list[str] = []
    if not root.is_dir():
        return parts, keys
    for path in root.rglob("*"):
        if not path.is_file() or path.stat().st_mtime >= cutoff:
            continue
        if path.name.startswith(TEMP_PREFIX):
            parts.append(path)
        else:
            keys.append(path.relative_to(root).as_posix())
    return parts, keys


def sweep_orphans(settings: Settings, *, now: float | None = None) -> SweepReport:
    """Remove old temporary files and old blobs that no row points at."""
    report = SweepReport()
    cutoff = (time.time() if now is None else now) - settings.orphan_grace_seconds
    root = settings.blob_dir
    parts, keys = _old_files(root, cutoff)
    for part in parts:
        part.unlink(missing_ok=True)
        report.parts.append(part.relative_to(root).as_posix())
    with private_session(settings) as session:
        kept = referenced(session, keys)
    for key in keys:
        if key not in kept:
            (root / key).unlink(missing_ok=True)
            report.blobs.append(key)
    if report.parts or report.blobs:
        logger.warning(
            "removed %d temporary file(s) and %d blob(s) no row points at: %s",
            len(report.parts),
            len(report.blobs),
            ", ".join([*report.parts, *report.blobs][:10]),
        )
    return report


def expired_files(session: Session) -> list[File]:
    """Expired files that no live job trains on (those wait until the job ends)."""
    rows = session.scalars(
        select(File).where(File.expires_at.is_not(None), File.expires_at <= now_s())
    ).all()
    return [row for row in rows if live_user(session, row.project_id, row.id) is None]


def purge_expired_files(settings: Settings) -> list[str]:
    """Delete expired files (rows, then blobs no other row shares); returns their ids."""
    blobs = BlobStore(settings.blob_dir)
    with private_session(settings) as session:
        rows = expired_files(session)
        ids, keys = [r.id for r in rows], [r.blob_key for r in rows]
        for row in rows:
            session.delete(row)
        session.commit()
        delete_unreferenced(session, blobs, keys)
    if ids:
        logger.info("purged %d expired file(s): %s", len(ids), ", ".join(ids[:10]))
    return ids
