"""Fetch one of a project's objects by id, or the one not-found error (another project's object
is not found either, so ids leak nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session

from store.errors import NotFoundError
from store.models import File, Job, OutlierMap, WebhookEndpoint


class ProjectOwned(Protocol):
    """A row that belongs to one project."""

    @property
    def id(self) -> str: ...

    @property
    def project_id(self) -> str: ...


Owned = TypeVar("Owned", bound=ProjectOwned)
# what the not-found message calls each kind of object
NAMES: dict[type, str] = {
    Job: "fine-tuning job",
    File: "file",
    OutlierMap: "outlier map",
    WebhookEndpoint: "webhook endpoint",
}


def get_owned(
    session: Session,
    model: type[Owned],
    object_id: object,
    project_id: str,
    *,
    param: str | None = None,
    visible: Callable[[Owned], bool] | None = None,
) -> Owned:
    """The project's `model` row `object_id`; NotFoundError (naming `param`) when there is none,
    it is another project's, or `visible` hides it (an expired file)."""
    row = session.get(model, object_id) if isinstance(object_id, str) else None
    if row is None or row.project_id != project_id or (visible is not None and not visible(row)):
        raise NotFoundError(NAMES[model], str(object_id)[:255], param=param)
    return row
