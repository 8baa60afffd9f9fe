"""What a request's `model` names: a catalog base, a fine-tuned model or one of its checkpoints.

Names are looked up as stored (`adapters.fine_tuned_model`, `checkpoints.
fine_tuned_model_checkpoint`), never parsed; another project's model is not found.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import catalog
from store.adapters import get_job_adapter
from store.checkpoints import get_checkpoint_at_step
from store.errors import InvalidRequestError, NotFoundError
from store.models import Adapter, Checkpoint, Job
from store.settings import Settings


@dataclass(frozen=True)
class ModelRef:
    """A servable model: its base id and, for a tuned model, the adapter archive to attach."""

    name: str
    base: str
    adapter_id: str | None = None
    blob_key: str | None = None
    sha256: str | None = None
    job_id: str | None = None
    step: int | None = None

    def keys(self) -> list[str]:
        """What a node holding this model reports as loaded (base id, adapter id)."""
        return [self.base] + ([self.adapter_id] if self.adapter_id else [])

    def wire(self) -> dict[str, Any]:
        """The JSON form sent to an inference node."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: Any) -> ModelRef:
        """Read the JSON form back; ValueError when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("base"), str):
            raise ValueError("a model reference needs at least 'name' and 'base'")
        fields: dict[str, Any] = {k: data.get(k) for k in cls.__dataclass_fields__}
        return cls(**fields)


def _base_ref(settings: Settings, name: str) -> ModelRef | None:
    entry = catalog.get_base_model(settings, name)
    if entry is None:
        return None
    if not entry.available:
        raise InvalidRequestError(
            f"The model '{name}' cannot be loaded on this host: {entry.reason}",
            param="model",
            code="model_not_available",
        )
    return ModelRef(name=name, base=entry.id)


def _adapter_ref(session: Session, project_id: str, name: str) -> ModelRef | None:
    row = session.scalar(
        select(Adapter).where(Adapter.project_id == project_id, Adapter.fine_tuned_model == name)
    )
    if row is None:
        return None
    return ModelRef(
        name=name,
        base=row.base_model,
        adapter_id=row.id,
        blob_key=row.blob_key,
        sha256=row.sha256,
        job_id=row.job_id,
    )


def _checkpoint_ref(session: Session, project_id: str, name: str) -> ModelRef | None:
    found = session.execute(
        select(Checkpoint, Job)
        .join(Job, Job.id == Checkpoint.job_id)
        .where(Job.project_id == project_id, Checkpoint.fine_tuned_model_checkpoint == name)
    ).first()
    if found is None:
        return None
    ckpt, job = found
    return ModelRef(
        name=name,
        base=job.model,
        adapter_id=ckpt.id,
        blob_key=ckpt.blob_key,
        sha256=ckpt.sha256,
        job_id=job.id,
        step=ckpt.step_number,
    )


def tuned_model(session: Session, project_id: str, name: str) -> ModelRef | None:
    """The project's fine-tuned model or checkpoint called `name`, or None."""
    return _adapter_ref(session, project_id, name) or _checkpoint_ref(session, project_id, name)


def resolve_model(session: Session, settings: Settings, project_id: str, name: str) -> ModelRef:
    """The model `name` of the catalog or of the project; NotFoundError otherwise."""
    ref = (
        _base_ref(settings, name)
        or _adapter_ref(session, project_id, name)
        or _checkpoint_ref(session, project_id, name)
    )
    if ref is None:
        raise NotFoundError("model", name, param="model")
    return ref


def job_model_ref(session: Session, job: Job, step: int | None) -> ModelRef:
    """The job's final model (step None) or its checkpoint at `step`; NotFoundError otherwise."""
    if step is None:
        ref = _adapter_ref(
            session, job.project_id, get_job_adapter(session, job.id).fine_tuned_model
        )
    else:
        ckpt = get_checkpoint_at_step(session, job.id, step)
        ref = _checkpoint_ref(session, job.project_id, ckpt.fine_tuned_model_checkpoint)
    if ref is None:
        raise NotFoundError("model of job", job.id)
    return ref


def project_checkpoints(session: Session, project_id: str) -> list[tuple[Checkpoint, Job]]:
    """Every checkpoint of the project's jobs, oldest first (listed as models)."""
    rows = session.execute(
        select(Checkpoint, Job)
        .join(Job, Job.id == Checkpoint.job_id)
        .where(Job.project_id == project_id)
        .order_by(Checkpoint.id)
    )
    return [(c, j) for c, j in rows]
