"""Warm bases and the tokenised-data cache: a second job on a base reuses both."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from sqlalchemy import select
from sqlalchemy.orm import Session
from torch import Tensor

from quaff_core.file_names import ADAPTER_WEIGHTS
from store.adapters import adapter_for_job
from store.blobs import BlobStore
from store.models import JobEvent
from store.settings import Settings
from tests.helpers import KeyedProject, queued_job, reloaded
from worker.artifacts import unpack
from worker.pipeline import run_job
from worker.warm import warm_state
from worker.warm_bases import Lru

OPTIONS = {"training": {"max_seq_length": 64}, "hyperparameters": {"n_epochs": 1}}


def _kinds(session: Session, job_id: str) -> list[str]:
    rows = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id)).all()
    return list(rows)


def _adapter(session: Session, settings: Settings, job_id: str, tmp: Path) -> dict[str, Tensor]:
    row = adapter_for_job(session, job_id)
    assert row is not None
    assert row.blob_key is not None
    target = unpack(BlobStore(settings.blob_dir).path(row.blob_key), tmp)
    return load_file(str(target / ADAPTER_WEIGHTS))


def test_second_job_trains_on_the_warm_base_and_equals_a_cold_one(
    db_session: Session,
    quaff_settings: Settings,
    keyed_project: KeyedProject,
    tmp_path: Path,
) -> None:
    first = queued_job(db_session, quaff_settings, keyed_project, seed=3, **OPTIONS)
    assert run_job(first.id, quaff_settings, "test:1") == "succeeded"
    assert "warm_base" not in _kinds(db_session, first.id)
    assert len(warm_state(quaff_settings).bases.values()) == 1
    second = queued_job(db_session, quaff_settings, keyed_project, seed=3, **OPTIONS)
    assert run_job(second.id, quaff_settings, "test:1") == "succeeded"
    kinds = _kinds(db_session, second.id)
    assert "warm_base" in kinds
    assert "model_loading" not in kinds
    assert "quantized" not in kinds
    assert "calibrating" not in kinds
    first, second = reloaded(db_session, first), reloaded(db_session, second)
    assert second.outlier_map_id == first.outlier_map_id
    a = _adapter(db_session, quaff_settings, first.id, tmp_path / "a")
    b = _adapter(db_session, quaff_settings, second.id, tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a)


def test_lru_drops_the_least_recently_used_past_its_capacity_and_idle_entries() -> None:
    now = [0.0]
    cache: Lru[str, int] = Lru(10, size=lambda v: v, idle_seconds=5, clock=lambda: now[0])
    assert cache.put("a", 4)
    assert cache.put("b", 4)
    assert cache.get("a") == 4  # "b" is now the least recently used
    assert cache.put("c", 4)
    assert cache.get("b") is None
    assert cache.get("a") == 4
    assert not cache.put("huge", 11)
    now[0] = 3.0
    assert cache.get("c") == 4
    now[0] = 7.0
    assert cache.release_idle() == ["a"]
    assert cache.values() == [4]


def test_no_warm_memory_keeps_no_base(
    db_session: Session, quaff_settings: Settings, keyed_project: KeyedProject
) -> None:
    settings = quaff_settings.model_copy(update={"warm_bases_mb": 0})
    job = queued_job(db_session, settings, keyed_project, **OPTIONS)
    assert run_job(job.id, settings, "test:1") == "succeeded"
    assert warm_state(settings).bases.values() == []
