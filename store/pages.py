"""Cursor pagination shared by every list query: ids sort by creation time.

A list asks with a `Cursor` (the id of the last item seen, and how many) and gets a `Page`
(the rows, whether more follow, the first and last ids). A cursor that names no row of the
list is refused, as OpenAI refuses it: a 400 naming `after`, not an empty page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from store.errors import InvalidRequestError

Row = TypeVar("Row")


@dataclass(frozen=True)
class Cursor:
    """Which page of a list: the rows after the id `after` (None: from the start), `limit` of
    them at most."""

    after: str | None = None
    limit: int = 20


FIRST_PAGE = Cursor()


@dataclass(frozen=True)
class Page(Generic[Row]):
    """A page of rows, newest first unless asked otherwise, whether more follow, and the ids of
    its first and last rows (None on an empty page)."""

    rows: list[Row]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


def page(
    session: Session,
    query: Select[Any],
    id_column: InstrumentedAttribute[str],
    cursor: Cursor,
    *,
    ascending: bool = False,
) -> Page[Any]:
    """Up to `cursor.limit` rows of `query` past `cursor.after` (newest first unless
    `ascending`); InvalidRequestError (param `after`) when `after` is no row of `query`."""
    after = cursor.after
    if after is not None:
        _check_cursor(session, query, id_column, after)
    if ascending:
        query = query.where(id_column > after) if after else query
        query = query.order_by(id_column)
    else:
        query = query.where(id_column < after) if after else query
        query = query.order_by(id_column.desc())
    rows = list(session.scalars(query.limit(cursor.limit + 1)))
    shown, key = rows[: cursor.limit], id_column.key
    if not shown:
        return Page(shown, has_more=False)
    return Page(
        shown,
        has_more=len(rows) > cursor.limit,
        first_id=getattr(shown[0], key),
        last_id=getattr(shown[-1], key),
    )


def _check_cursor(
    session: Session, query: Select[Any], id_column: InstrumentedAttribute[str], after: str
) -> None:
    """The cursor must be an item of this list (the caller's own, not expired, not deleted)."""
    if session.scalars(query.where(id_column == after).limit(1)).first() is None:
        raise InvalidRequestError(
            f"Invalid value for 'after': '{after[:64]}' is not an item of this list; pass the "
            "id of the last item of the previous page.",
            param="after",
        )
