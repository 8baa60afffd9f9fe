"""Cursor pagination shared by every list query: ids sort by creation time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session


def page(
    session: Session,
    query: Select[Any],
    id_column: InstrumentedAttribute[str],
    *,
    after: str | None,
    limit: int,
    ascending: bool = False,
) -> tuple[list[Any], bool]:
    """Up to `limit` rows of `query` past the cursor `after` (newest first unless `ascending`);
    returns (rows, has_more)."""
    if ascending:
        query = query.where(id_column > after) if after else query
        query = query.order_by(id_column)
    else:
        query = query.where(id_column < after) if after else query
        query = query.order_by(id_column.desc())
    rows = list(session.scalars(query.limit(limit + 1)))
    return rows[:limit], len(rows) > limit
