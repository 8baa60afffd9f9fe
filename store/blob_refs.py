"""Which rows point at a blob: a blob may be shared (a result file references its adapter's
archive), so it is removed only once no row of any kind points at it."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Adapter, Checkpoint, File, MergedExport, OutlierMap

_IN_LIST = 500
REFERENCING = (File, Adapter, Checkpoint, OutlierMap, MergedExport)


def referenced(session: Session, keys: Iterable[str]) -> set[str]:
    """The keys among `keys` that some row still points at."""
    wanted = list(dict.fromkeys(keys))
    found: set[str] = set()
    for start in range(0, len(wanted), _IN_LIST):
        chunk = wanted[start : start + _IN_LIST]
        for table in REFERENCING:
            found.update(session.scalars(select(table.blob_key).where(table.blob_key.in_(chunk))))
    return found


def is_referenced(session: Session, key: str) -> bool:
    """Whether any row still points at `key`."""
    return bool(referenced(session, [key]))
