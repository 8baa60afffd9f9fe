"""bench.ui_load seeds a running job with exactly the events asked for."""

from __future__ import annotations

from pathlib import Path

from bench.ui_load import bundle_sizes, seed_running_job
from store import events, migrate
from store.db import dispose_engine, session_scope
from store.models import Job
from store.settings import Settings


def test_seed_running_job_has_exactly_n_events(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    migrate.upgrade(settings)
    try:
        seeded = seed_running_job(settings, 100)
        with session_scope(settings) as session:
            job = session.get(Job, seeded.job_id)
            assert job is not None
            assert job.status == "running"
            rows = events.events_since(session, seeded.job_id)
            assert len(rows) == 100
            assert seeded.messages == sum(r.type == "message" for r in rows)
            metrics = [r.data for r in rows if r.type == "metrics" and r.data]
            assert metrics[-1]["step"] == seeded.last_step == len(metrics)
    finally:
        dispose_engine(settings)


def test_bundle_sizes_cover_every_served_file() -> None:
    sizes = bundle_sizes()
    assert "index.html" in sizes
    assert all(0 < s["gzip"] <= s["bytes"] for s in sizes.values() if s["bytes"] > 100)
