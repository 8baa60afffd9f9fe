"""Storage use of the caller's project (our extension): bytes by kind, each shared blob once."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from api.db import DbDep
from api.deps import CurrentProject
from store import usage

router = APIRouter(prefix="/v1", tags=["usage"])


class KindUsageObject(BaseModel):
    """Objects of one kind and the bytes of the blobs they hold."""

    count: int
    bytes: int


class StorageUsage(BaseModel):
    """`object: "usage.storage"`: what the project keeps in the data directory."""

    object: Literal["usage.storage"] = "usage.storage"
    project_id: str
    bytes: int
    files: KindUsageObject
    adapters: KindUsageObject
    checkpoints: KindUsageObject
    exports: KindUsageObject
    outlier_maps: KindUsageObject


@router.get("/usage/storage", response_model=StorageUsage)
async def storage_usage(project: CurrentProject, db: DbDep) -> Response:
    """Bytes stored for the project: uploads and result files, adapters, checkpoints, merged
    exports, outlier maps."""

    def work(session: Session) -> StorageUsage:
        found = usage.project_usage(session, project.id, project.name)
        kinds = {k: KindUsageObject(count=v.count, bytes=v.bytes) for k, v in found.kinds.items()}
        return StorageUsage.model_validate(
            {"project_id": project.id, "bytes": found.bytes, **kinds}
        )

    return await db.respond(work)
