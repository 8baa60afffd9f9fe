"""Engine and session factory built from the settings (SQLite gets WAL, foreign keys and a busy
timeout; every pool is bounded and its waits end)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from store.settings import Settings, get_settings

_lock = threading.Lock()
_engines: dict[str, Engine] = {}


PG_CONNECT_TIMEOUT = 5
POOL_OVERFLOW = 2  # connections beyond the pool for in-process helpers (sweeps, the event hub)


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return on_connect


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file of `url` (also `sqla+sqlite:` broker URLs) readable by its owner
    only, or make an existing one so; SQLite gives its WAL and shared-memory files the same mode."""
    parsed = make_url(url.removeprefix("sqla+"))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    path = Path(str(parsed.database))
    path.parent.mkdir(parents=True, exist_ok=True)
    # never open an existing database file here: closing any descriptor of it drops every POSIX
    # lock this process's SQLite connections hold on it (a "disk I/O error" for them)
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def make_engine(
    url: str, *, pool_size: int = 5, pool_timeout: float = 10.0, busy_timeout_ms: int = 10000
) -> Engine:
    """A new engine for `url`: a bounded pool whose waits end (`pool_timeout`); SQLite files get
    their directory created, WAL and a busy timeout; PostgreSQL a connect timeout."""
    parsed = make_url(url)
    pool = {"pool_size": pool_size, "max_overflow": POOL_OVERFLOW, "pool_timeout": pool_timeout}
    if parsed.get_backend_name() == "sqlite":
        private_sqlite_file(url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            **pool,
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms))
        return engine
    connect_args = {"connect_timeout": PG_CONNECT_TIMEOUT} if "postgresql" in url else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)


def settings_engine(settings: Settings) -> Engine:
    """A new engine sized by the settings (pool = `db_pool_size`, waits bounded)."""
    return make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.request_wait_seconds,
        busy_timeout_ms=settings.db_busy_timeout_ms,
    )


def get_engine(settings: Settings | None = None) -> Engine:
    """The shared engine for the settings' database URL."""
    settings = settings or get_settings()
    url = settings.database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = settings_engine(settings)
        return engine


def dispose_engine(settings: Settings | None = None) -> None:
    """Close and forget the shared engine for the settings' database URL."""
    url = (settings or get_settings()).database_url
    with _lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def dispose_all() -> None:
    """Close and forget every shared engine."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    """A sessionmaker bound to the shared engine; objects stay readable after commit."""
    return sessionmaker(bind=get_engine(settings), expire_on_commit=False)


@contextmanager
def private_session(settings: Settings) -> Iterator[Session]:
    """A session on an engine of its own, disposed afterwards: for a process that forks later
    (the worker's main process) and must keep no pooled connection a child could inherit."""
    engine = make_engine(
        settings.database_url, pool_size=1, busy_timeout_ms=settings.db_busy_timeout_ms
    )
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield session
    finally:
        engine.dispose()


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """A session that rolls back on error and always closes (for the worker and the CLI)."""
    session = session_factory(settings)()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
