"""The `service` fixture: the API and one worker as real processes, on two back-ends.

`embedded`: SQLite + kombu's SQLAlchemy broker in a private data directory (the defaults).
`redis-postgres`: PostgreSQL (a throw-away schema) + Redis (a dedicated db number, flushed).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from store import migrate
from store.auth import create_key
from store.db import dispose_engine, session_factory
from store.settings import Settings
from tests.helpers import REDIS_URL, redis_unreachable, unavailable
from tests.processes import Service, service_env
from worker.warm import reset_warm_state


@pytest.fixture(autouse=True)
def cold_worker() -> Iterator[None]:
    """Each test starts on a worker with no warm base or cached dataset, and leaves none."""
    reset_warm_state()
    yield
    reset_warm_state()


BACKENDS = [
    "embedded",
    pytest.param("redis-postgres", marks=[pytest.mark.redis, pytest.mark.postgres]),
]


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The API and one worker on the chosen back-end, with a project key; stopped afterwards."""
    root = tmp_path_factory.mktemp(f"svc-{request.param}")
    if request.param == "embedded":
        settings = Settings(data_dir=root / "data")
    else:
        reason = redis_unreachable(REDIS_URL)
        if reason:
            unavailable(reason)

        redis.Redis.from_url(REDIS_URL).flushdb()
        database_url = request.getfixturevalue("pg_schema_url")
        settings = Settings(data_dir=root / "data", database_url=database_url, broker_url=REDIS_URL)
    migrate.upgrade(settings)
    with session_factory(settings)() as session:
        _row, key = create_key(session, f"e2e-{uuid.uuid4().hex[:8]}")
    svc = Service(
        name=request.param, settings=settings, env=service_env(settings), logs=root, api_key=key
    )
    try:
        svc.start_api()
        svc.start_worker()
        yield svc
    finally:
        svc.stop()
        dispose_engine(settings)
        if request.param != "embedded":
            redis.Redis.from_url(REDIS_URL).flushdb()
