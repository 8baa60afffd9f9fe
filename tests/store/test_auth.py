"""Projects and API keys: hashed at rest, authenticated by hash, revocable."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.auth import authenticate, create_key, list_keys, revoke_key
from store.errors import AuthenticationError
from store.models import ApiKey
from tests.helpers import make_project


def test_key_is_stored_hashed_never_in_clear(db_session: Session) -> None:
    keyed = make_project(db_session)
    assert keyed.key.startswith("sk-quaff-")
    rows = db_session.scalars(select(ApiKey).where(ApiKey.project_id == keyed.project.id)).all()
    assert len(rows) == 1
    assert rows[0].key_hash == hashlib.sha256(keyed.key.encode()).hexdigest()
    assert keyed.key not in {rows[0].key_hash, rows[0].prefix, rows[0].id}
    assert keyed.key.startswith(rows[0].prefix)


def test_authenticate_returns_the_keys_project(db_session: Session) -> None:
    keyed = make_project(db_session)
    assert authenticate(db_session, keyed.key).id == keyed.project.id


@pytest.mark.parametrize("key", [None, "", "sk-quaff-wrong"])
def test_authenticate_refuses_missing_or_unknown_keys(db_session: Session, key: str | None) -> None:
    with pytest.raises(AuthenticationError) as exc:
        authenticate(db_session, key)
    assert exc.value.code == "invalid_api_key"
    assert exc.value.status_code == 401


def test_revoked_key_no_longer_authenticates(db_session: Session) -> None:
    keyed = make_project(db_session)
    row = revoke_key(db_session, keyed.key[:16])
    assert row.revoked_at is not None
    with pytest.raises(AuthenticationError, match="Incorrect API key"):
        authenticate(db_session, keyed.key)


def test_second_key_joins_the_existing_project(db_session: Session) -> None:
    keyed = make_project(db_session)
    row, key = create_key(db_session, keyed.project.name)
    assert row.project_id == keyed.project.id
    assert key != keyed.key
    listed = {k.id for k, p in list_keys(db_session) if p.id == keyed.project.id}
    assert row.id in listed
    assert len(listed) == 2
