"""Projects and API keys: keys are `sk-quaff-...`, stored only as sha256, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from store.errors import AuthenticationError, InvalidRequestError, NotFoundError
from store.ids import new_id, now_s
from store.models import ApiKey, Project

KEY_PREFIX = "sk-quaff-"
DISPLAY_CHARS = 16


def hash_key(key: str) -> str:
    """The stored form of a key: its sha256 in hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def get_or_create_project(session: Session, name: str) -> Project:
    """The project called `name`, created when new (not committed)."""
    name = name.strip()
    if not name or len(name) > 128:
        raise InvalidRequestError("project name must be 1 to 128 characters", param="project")
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        project = Project(id=new_id("proj"), name=name, created_at=now_s())
        session.add(project)
        session.flush()
    return project


def create_key(session: Session, project_name: str) -> tuple[ApiKey, str]:
    """Create a key for the project (created if new) and commit; returns the row and the key."""
    project = get_or_create_project(session, project_name)
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key"),
        project_id=project.id,
        key_hash=hash_key(plaintext),
        prefix=plaintext[:DISPLAY_CHARS],
        created_at=now_s(),
    )
    session.add(row)
    session.commit()
    return row, plaintext


def authenticate(session: Session, key: str | None) -> Project:
    """The project of a valid, unrevoked key; AuthenticationError otherwise."""
    if not key:
        raise AuthenticationError(
            "You didn't provide an API key. Send 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        shown = key[:DISPLAY_CHARS] + "..." if len(key) > DISPLAY_CHARS else key
        raise AuthenticationError(f"Incorrect API key provided: {shown}", code="invalid_api_key")
    project = session.get(Project, row.project_id)
    if project is None:
        raise AuthenticationError("The key's project no longer exists.", code="invalid_api_key")
    return project


def list_keys(session: Session) -> Sequence[tuple[ApiKey, Project]]:
    """Every key with its project, oldest first (only prefixes: the keys are not stored)."""
    rows = session.execute(
        select(ApiKey, Project).join(Project, ApiKey.project_id == Project.id).order_by(ApiKey.id)
    )
    return [(key, project) for key, project in rows]


def revoke_key(session: Session, prefix_or_id: str) -> ApiKey:
    """Revoke the one key whose id or display prefix starts with `prefix_or_id`; commits."""
    if len(prefix_or_id) < 6:
        raise InvalidRequestError("give at least 6 characters of the key id or key prefix")
    rows = session.scalars(
        select(ApiKey).where(
            or_(ApiKey.id.startswith(prefix_or_id), ApiKey.prefix.startswith(prefix_or_id))
        )
    ).all()
    if not rows:
        raise NotFoundError("API key", prefix_or_id)
    if len(rows) > 1:
        raise InvalidRequestError(f"'{prefix_or_id}' matches {len(rows)} keys; give more of it")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = now_s()
    session.commit()
    return row
