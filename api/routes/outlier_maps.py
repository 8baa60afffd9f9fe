"""Outlier maps (our extension): calibration results, listed and retrieved with channel indices."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import BlobsDep, CurrentProject, SessionDep
from api.schemas import OutlierMapList, OutlierMapObject, outlier_map_object, page
from store import outlier_maps

router = APIRouter(prefix="/v1/outlier_maps", tags=["outlier maps"])


@router.get("", response_model=OutlierMapList)
def list_outlier_maps(
    project: CurrentProject,
    session: SessionDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OutlierMapList:
    """The project's maps, newest first (without the per-layer indices)."""
    rows, has_more = outlier_maps.list_outlier_maps(session, project.id, after=after, limit=limit)
    return page(OutlierMapList, [outlier_map_object(r) for r in rows], has_more, with_ids=True)


@router.get("/{map_id}", response_model=OutlierMapObject)
def retrieve_outlier_map(
    map_id: str, project: CurrentProject, session: SessionDep, blobs: BlobsDep
) -> OutlierMapObject:
    """One map with its per-layer outlier channel indices."""
    row = outlier_maps.get_outlier_map(session, project.id, map_id)
    payload = outlier_maps.load_payload(blobs, row)
    layers = {str(name): [int(c) for c in chans] for name, chans in payload["layers"].items()}
    return outlier_map_object(row, layers)
