"""Models: the catalog's base models plus the project's fine-tuned models (ids may hold '/')."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.orm import Session

from api.db import DbDep
from api.deps import BlobsDep, CurrentProject, SettingsDep
from api.schemas import ModelDeleted, ModelList, ModelObject, adapter_model_object
from store import adapters, catalog
from store.errors import InvalidRequestError, NotFoundError
from store.model_refs import project_checkpoints
from store.models import Checkpoint, Job
from store.settings import Settings

router = APIRouter(prefix="/v1/models", tags=["models"])


def _checkpoint_model(ckpt: Checkpoint, job: Job) -> ModelObject:
    """A checkpoint as a model (servable by chat/completions like the final model)."""
    return ModelObject(
        id=ckpt.fine_tuned_model_checkpoint, created=ckpt.created_at, owned_by=job.project_id,
        base_model=job.model, fine_tuning_job=job.id,
    )  # fmt: skip


def _base_model(entry: catalog.BaseModel) -> ModelObject:
    return ModelObject(
        id=entry.id, created=0, owned_by="quaff", available=entry.available, reason=entry.reason
    )


def _base_models(settings: Settings) -> list[ModelObject]:
    return [_base_model(m) for m in catalog.base_models(settings)]


@router.get("", response_model=ModelList)
async def list_models(project: CurrentProject, db: DbDep, settings: SettingsDep) -> Response:
    """Base models first, then the project's fine-tuned models and their checkpoints."""

    def work(session: Session) -> ModelList:
        tuned = [adapter_model_object(a) for a in adapters.list_adapters(session, project.id)]
        ckpts = [_checkpoint_model(c, j) for c, j in project_checkpoints(session, project.id)]
        return ModelList(data=[*_base_models(settings), *tuned, *ckpts], has_more=False)

    return await db.respond(work)


@router.get("/{model:path}", response_model=ModelObject)
async def retrieve_model(
    model: str, project: CurrentProject, db: DbDep, settings: SettingsDep
) -> Response:
    """A base model, one of the project's fine-tuned models, or one of their checkpoints."""

    def work(session: Session) -> ModelObject:
        entry = catalog.get_base_model(settings, model)  # an id or an alias jobs.create accepts
        if entry is not None:
            return _base_model(entry)
        try:
            return adapter_model_object(adapters.get_adapter_by_model(session, project.id, model))
        except NotFoundError:
            for ckpt, job in project_checkpoints(session, project.id):
                if ckpt.fine_tuned_model_checkpoint == model:
                    return _checkpoint_model(ckpt, job)
            raise

    return await db.respond(work)


@router.delete("/{model:path}", response_model=ModelDeleted)
async def delete_model(
    model: str, project: CurrentProject, db: DbDep, blobs: BlobsDep, settings: SettingsDep
) -> Response:
    """Delete a fine-tuned model: its adapter, the result file sharing its archive and the job's
    checkpoints (base models cannot be deleted)."""
    if catalog.get_base_model(settings, model) is not None:
        raise InvalidRequestError(
            f"'{model}' is a base model; only fine-tuned models can be deleted.", param="model"
        )

    def work(session: Session) -> ModelDeleted:
        row = adapters.get_adapter_by_model(session, project.id, model)
        adapters.delete_adapter(session, blobs, row)
        return ModelDeleted(id=model)

    return await db.respond(work)
