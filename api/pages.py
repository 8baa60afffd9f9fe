"""List endpoints' paging in one place: `after` and `limit` as the store's `Cursor`, and the
store's `Page` as OpenAI's list object (`first_id`/`last_id` for the lists that carry them)."""

# No `from __future__ import annotations`: FastAPI reads the dependency's parameter annotations,
# which use the factory's `most` and `default`, at runtime.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from api.schemas import CursorList, ListObject
from store.pages import Cursor, Page

List = TypeVar("List", bound=ListObject[Any])


def cursor_query(*, default: int, most: int) -> Callable[..., Awaitable[Cursor]]:
    """The dependency reading `after` and `limit` (1 to `most`, `default` when absent)."""

    async def cursor(
        after: Annotated[
            str | None, Query(description="The id of the last item of the previous page.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=most, description="Items per page.")] = default,
    ) -> Cursor:
        return Cursor(after=after, limit=limit)

    return cursor


PageDep = Annotated[Cursor, Depends(cursor_query(default=20, most=100))]
CheckpointPageDep = Annotated[Cursor, Depends(cursor_query(default=10, most=100))]
EventPageDep = Annotated[Cursor, Depends(cursor_query(default=20, most=1000))]
FilePageDep = Annotated[Cursor, Depends(cursor_query(default=10000, most=10000))]


def list_object(cls: type[List], page: Page[Any], item: Callable[[Any], BaseModel]) -> List:
    """The list object of type `cls` holding `item(row)` for each row of the page."""
    data = [item(row) for row in page.rows]
    if issubclass(cls, CursorList):
        return cls(data=data, has_more=page.has_more, first_id=page.first_id, last_id=page.last_id)
    return cls(data=data, has_more=page.has_more)
