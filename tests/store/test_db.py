"""Engines: SQLite files (and their WAL) are created readable by their owner only."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from store.db import make_engine, private_sqlite_file


def test_a_sqlite_database_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    path.write_bytes(b"")
    path.chmod(0o644)  # as an earlier version left it
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))
        wal = tmp_path / "old.sqlite-wal"
        assert wal.exists()
        assert wal.stat().st_mode & 0o777 == 0o600
    engine.dispose()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_broker_file_is_created_owner_only(tmp_path: Path) -> None:
    private_sqlite_file(f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    assert (tmp_path / "broker.sqlite").stat().st_mode & 0o777 == 0o600
    private_sqlite_file("postgresql://u@127.0.0.1/db")  # not a file: nothing to do
