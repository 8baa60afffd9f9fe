"""Outlier maps (our extension): calibration results, listed and retrieved with channel indices."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.db import DbDep
from api.deps import BlobsDep, CurrentProject
from api.pages import PageDep, list_object
from api.schemas import OutlierMapList, OutlierMapObject, outlier_map_object
from store import outlier_maps

router = APIRouter(prefix="/v1/outlier_maps", tags=["outlier maps"])


@router.get("", response_model=OutlierMapList)
async def list_outlier_maps(project: CurrentProject, db: DbDep, cursor: PageDep) -> Response:
    """The project's maps, newest first (without the per-layer indices)."""

    def work(session: Session) -> OutlierMapList:
        found = outlier_maps.list_outlier_maps(session, project.id, cursor)
        return list_object(OutlierMapList, found, outlier_map_object)

    return await db.respond(work)


@router.get("/{map_id}", response_model=OutlierMapObject)
async def retrieve_outlier_map(
    map_id: str, project: CurrentProject, db: DbDep, blobs: BlobsDep
) -> Response:
    """One map with its per-layer outlier channel indices."""

    def work(session: Session) -> OutlierMapObject:
        row = outlier_maps.get_outlier_map(session, project.id, map_id)
        payload = outlier_maps.load_payload(blobs, row)
        layers = {str(n): [int(c) for c in chans] for n, chans in payload["layers"].items()}
        return outlier_map_object(row, layers)

    return await db.respond(work)
