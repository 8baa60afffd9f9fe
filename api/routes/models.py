"""Models: the catalog's base models plus the project's fine-tuned models (ids may hold '/')."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import BlobsDep, CurrentProject, SessionDep, SettingsDep
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
def list_models(project: CurrentProject, session: SessionDep, settings: SettingsDep) -> ModelList:
    """Base models first, then the project's fine-tuned models."""
    tuned = [adapter_model_object(a) for a in adapters.list_adapters(session, project.id)]
    return page(ModelList, [*_base_models(settings), *tuned], False)


@router.get("/{model:path}", response_model=ModelObject)
def retrieve_model(
    model: str, project: CurrentProject, session: SessionDep, settings: SettingsDep
) -> ModelObject:
    """A base model or one of the project's fine-tuned models."""
    for base in _base_models(settings):
        if base.id == model:
            return base
    return adapter_model_object(adapters.get_adapter_by_model(session, project.id, model))


@router.delete("/{model:path}", response_model=ModelDeleted)
def delete_model(
    model: str,
    project: CurrentProject,
    session: SessionDep,
    blobs: BlobsDep,
    settings: SettingsDep,
) -> ModelDeleted:
    """Delete a fine-tuned model: its adapter, the result file sharing its archive and the job's
    checkpoints (base models cannot be deleted)."""
    if model in settings.base_models:
        raise InvalidRequestError(
            f"'{model}' is a base model; only fine-tuned models can be deleted.", param="model"
        )
    row = adapters.get_adapter_by_model(session, project.id, model)
    adapters.delete_adapter(session, blobs, row)
    return ModelDeleted(id=model)
