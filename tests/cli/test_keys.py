"""`quaff keys` and `quaff db` on a SQLite store in a temporary data directory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cli.main import main
from store import migrate
from store.db import dispose_all, session_scope
from store.models import ApiKey
from store.settings import get_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """QUAFF_DATA_DIR pointed at a fresh directory, settings re-read."""
    monkeypatch.setenv("QUAFF_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("QUAFF_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    dispose_all()
    get_settings.cache_clear()


def test_db_upgrade_current_downgrade(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = migrate.head_revision()
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.strip() == f"database at revision {head}"
    assert (data_dir / "quaff.sqlite").is_file()
    assert main(["db", "current"]) == 0
    assert capsys.readouterr().out.strip() == f"{head} (up to date)"
    assert main(["db", "downgrade", "base"]) == 0
    assert capsys.readouterr().out.strip() == "database at revision base"


def test_keys_create_prints_the_key_once_and_stores_its_hash(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["db", "upgrade"])
    capsys.readouterr()
    assert main(["keys", "create", "--project", "demo"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("sk-quaff-")
    with session_scope() as session:
        row = session.scalars(select(ApiKey)).one()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"{key[:16]}...  demo" in listed
    assert key not in listed
    assert main(["keys", "revoke", key[:16]]) == 0
    assert capsys.readouterr().out.strip() == f"revoked {row.id} ({key[:16]}...)"


def test_keys_revoke_unknown_is_a_one_line_error(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["db", "upgrade"])
    assert main(["keys", "revoke", "sk-quaff-nothing"]) == 1
    assert capsys.readouterr().err.strip() == (
        "quaff keys: error: No API key found with id 'sk-quaff-nothing'."
    )
