"""Models: the catalog's base models plus the project's fine-tuned models (ids may hold '/')."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.db import DbDep
from api.deps import BlobsDep, CurrentProject, SettingsDep
from api.schemas import ModelDeleted, ModelList, ModelObject, adapter_model_object, page
from store import adapters, catalog
from store.errors import InvalidRequestError
from store.settings import Settings

router = APIRouter(prefix="/v1/models", tags=["models"])


def _base_models(settings: Settings) -> list[ModelObject]:
    return [
        ModelObject(id=m.id, created=0, owned_by="quaff", available=m.available, reason=m.reason)
        for m in catalog.base_models(settings)
    ]


@router.get("", response_model=ModelList)
async def list_models(project: CurrentProject, db: DbDep, settings: SettingsDep) -> Response:
    """Base models first, then the project's fine-tuned models."""

    def work(session: Session) -> ModelList:
        tuned = [adapter_model_object(a) for a in adapters.list_adapters(session, project.id)]
        return page(ModelList, [*_base_models(settings), *tuned], False)

    return await db.respond(work)


@router.get("/{model:path}", response_model=ModelObject)
async def retrieve_model(
    model: str, project: CurrentProject, db: DbDep, settings: SettingsDep
) -> Response:
    """A base model or one of the project's fine-tuned models."""

    def work(session: Session) -> ModelObject:
        for base in _base_models(settings):
            if base.id == model:
                return base
        return adapter_model_object(adapters.get_adapter_by_model(session, project.id, model))

    return await db.respond(work)


@router.delete("/{model:path}", response_model=ModelDeleted)
async def delete_model(
    model: str, project: CurrentProject, db: DbDep, blobs: BlobsDep, settings: SettingsDep
) -> Response:
    """Delete a fine-tuned model: its adapter, the result file sharing its archive and the job's
    checkpoints (base models cannot be deleted)."""
    if model in settings.base_models:
        raise InvalidRequestError(
            f"'{model}' is a base model; only fine-tuned models can be deleted.", param="model"
        )

    def work(session: Session) -> ModelDeleted:
        row = adapters.get_adapter_by_model(session, project.id, model)
        adapters.delete_adapter(session, blobs, row)
        return ModelDeleted(id=model)

    return await db.respond(work)
