"""Disk use per project: the bytes of every blob its rows point at, each shared blob once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Adapter, Checkpoint, File, Job, MergedExport, OutlierMap, Project

KINDS = ("adapters", "checkpoints", "exports", "outlier_maps", "files")  # a shared blob: first


@dataclass(frozen=True)
class KindUsage:
    """How many objects of one kind and the bytes of the blobs only they hold."""

    count: int
    bytes: int


@dataclass(frozen=True)
class ProjectUsage:
    """A project's stored bytes by kind; `bytes` counts each blob once."""

    project_id: str
    name: str
    bytes: int
    kinds: dict[str, KindUsage] = field(default_factory=dict)


def _blobs(session: Session, project_id: str) -> dict[str, list[tuple[str, int]]]:
    """(blob key, bytes) of the project's rows, by kind."""
    return {
        "files": list(session.execute(
            select(File.blob_key, File.bytes).where(File.project_id == project_id))),
        "adapters": list(session.execute(
            select(Adapter.blob_key, Adapter.bytes).where(Adapter.project_id == project_id))),
        "checkpoints": list(session.execute(
            select(Checkpoint.blob_key, Checkpoint.bytes)
            .join(Job, Job.id == Checkpoint.job_id).where(Job.project_id == project_id))),
        "outlier_maps": list(session.execute(
            select(OutlierMap.blob_key, OutlierMap.bytes)
            .where(OutlierMap.project_id == project_id))),
        "exports": [(k, b or 0) for k, b in session.execute(
            select(MergedExport.blob_key, MergedExport.bytes)
            .join(Job, Job.id == MergedExport.job_id).where(Job.project_id == project_id))
            if k is not None],
    }  # fmt: skip


def project_usage(session: Session, project_id: str, name: str = "") -> ProjectUsage:
    """The project's usage; a blob shared by two kinds (an adapter and its result file) counts
    for the kind listed first (adapters before files)."""
    by_kind = _blobs(session, project_id)
    seen: set[str] = set()
    kinds: dict[str, KindUsage] = {}
    for kind in KINDS:
        rows = by_kind[kind]
        own = {key: size for key, size in rows if key not in seen}
        seen.update(own)
        kinds[kind] = KindUsage(count=len(rows), bytes=sum(own.values()))
    total = sum(k.bytes for k in kinds.values())
    return ProjectUsage(project_id=project_id, name=name, bytes=total, kinds=kinds)


def all_projects_usage(session: Session) -> list[ProjectUsage]:
    """Every project's usage, largest first."""
    projects = session.scalars(select(Project).order_by(Project.id)).all()
    found = [project_usage(session, p.id, p.name) for p in projects]
    return sorted(found, key=lambda u: -u.bytes)


def directory_bytes(root: Path) -> int:
    """The bytes of every file under `root` (the data directory's real size on disk)."""
    if not root.exists():
        return 0
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
