"""Wire models (the OpenAI object shapes plus our extensions) and their builders from rows."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel

from quaff_core.options.train_config import derived_learning_rate
from store.models import Adapter, Checkpoint, File, Job, JobEvent, OutlierMap


class FileObject(BaseModel):
    """`object: "file"` as the SDK's FileObject expects it."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str
    status_details: str | None
    expires_at: int | None = None
    sha256: str
    format: str | None
    n_examples: int | None


class FileDeleted(BaseModel):
    """Reply to a file delete."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class JobError(BaseModel):
    """A failed job's error."""

    code: str
    message: str
    param: str | None


class Progress(BaseModel):
    """Our addition: how far training got."""

    step: int
    total_steps: int | None
    epoch: float | None


class StabilityPoint(BaseModel):
    """The initial outlier map's recall (share of its channels found again) at a checkpoint."""

    step: int
    recall: float


class Resolved(BaseModel):
    """Our addition: what training uses where the options leave it to be derived."""

    learning_rate: float


class JobObject(BaseModel):
    """`object: "fine_tuning.job"`: every field the SDK types, plus lora, quantization, training."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    finished_at: int | None
    model: str
    fine_tuned_model: str | None
    organization_id: str
    status: str
    hyperparameters: dict[str, Any]
    method: dict[str, Any]
    training_file: str
    validation_file: str | None
    result_files: list[str]
    trained_tokens: int | None
    error: JobError | None
    seed: int
    suffix: str | None
    user_provided_suffix: str | None
    estimated_finish: int | None
    integrations: list[Any]
    metadata: dict[str, str] | None
    lora: dict[str, Any]
    peft: dict[str, Any]
    quantization: dict[str, Any]
    training: dict[str, Any]
    resolved: Resolved
    runtime: dict[str, Any] | None
    outlier_map: str | None
    outlier_stability: list[StabilityPoint] | None
    continued_from: str | None
    progress: Progress


class EventObject(BaseModel):
    """`object: "fine_tuning.job.event"`."""

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: str
    message: str
    type: str
    kind: str
    data: dict[str, Any] | None


class CheckpointObject(BaseModel):
    """`object: "fine_tuning.job.checkpoint"`."""

    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    step_number: int
    bytes: int
    sha256: str


class ModelObject(BaseModel):
    """`object: "model"`, plus availability for catalog models."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    available: bool = True
    reason: str | None = None
    base_model: str | None = None
    fine_tuning_job: str | None = None


class ModelDeleted(BaseModel):
    """Reply to a model delete."""

    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class OutlierMapObject(BaseModel):
    """`object: "outlier_map"`: a calibration result; `layers` only when retrieved one by one."""

    id: str
    object: Literal["outlier_map"] = "outlier_map"
    created_at: int
    base_model: str
    dataset_file: str | None
    dataset_sha256: str
    strategy: str
    threshold: float | None
    options: dict[str, Any]
    n_layers: int
    n_outlier_channels: int
    layers: dict[str, list[int]] | None = None


Item = TypeVar("Item", bound=BaseModel)


class ListObject(BaseModel, Generic[Item]):
    """`object: "list"` page."""

    object: Literal["list"] = "list"
    data: list[Item]
    has_more: bool


class CursorList(ListObject[Item], Generic[Item]):
    """A page that also names its first and last ids (files, checkpoints, outlier maps)."""

    first_id: str | None = None
    last_id: str | None = None


class FileList(CursorList[FileObject]):
    """A page of files."""


class JobList(ListObject[JobObject]):
    """A page of fine-tuning jobs."""


class EventList(ListObject[EventObject]):
    """A page of job events."""


class CheckpointList(CursorList[CheckpointObject]):
    """A page of checkpoints."""


class ModelList(ListObject[ModelObject]):
    """The models: base models, then fine-tuned ones."""


class OutlierMapList(CursorList[OutlierMapObject]):
    """A page of outlier maps."""


def file_object(row: File) -> FileObject:
    """The wire form of a file row."""
    return FileObject(
        id=row.id, bytes=row.bytes, created_at=row.created_at, filename=row.filename,
        purpose=row.purpose, status=row.status, status_details=row.status_details,
        sha256=row.sha256, format=row.data_format, n_examples=row.n_examples,
        expires_at=row.expires_at,
    )  # fmt: skip


def resolved(job: Job) -> Resolved:
    """The values the job's options derive: the learning rate (the given one, else the base
    rate times the multiplier)."""
    rate = derived_learning_rate(
        job.training.get("learning_rate"), job.hyperparameters.get("learning_rate_multiplier")
    )
    return Resolved(learning_rate=rate)


def method_object(job: Job) -> dict[str, Any]:
    """OpenAI's `method`: its type and, under it, the hyperparameters (and the grader)."""
    kind = job.method or "supervised"
    inner: dict[str, Any] = {"hyperparameters": job.hyperparameters}
    if job.grader is not None:
        inner["grader"] = job.grader
    return {"type": kind, kind: inner}


def job_object(job: Job) -> JobObject:
    """The wire form of a job row."""
    error = None
    if job.error_code or job.error_message:
        error = JobError(
            code=job.error_code or "error", message=job.error_message or "", param=job.error_param
        )
    return JobObject(
        id=job.id, created_at=job.created_at, finished_at=job.finished_at, model=job.model,
        fine_tuned_model=job.fine_tuned_model, organization_id=job.project_id, status=job.status,
        hyperparameters=job.hyperparameters,
        method=method_object(job),
        training_file=job.training_file_id, validation_file=job.validation_file_id,
        result_files=list(job.result_files or []), trained_tokens=job.trained_tokens, error=error,
        seed=job.seed, suffix=job.suffix, user_provided_suffix=job.suffix,
        estimated_finish=job.estimated_finish, integrations=[], metadata=job.meta, lora=job.lora,
        peft=job.peft or {"method": "lora"}, quantization=job.quantization,
        training=job.training, resolved=resolved(job), runtime=job.runtime,
        outlier_map=job.outlier_map_id,
        outlier_stability=[StabilityPoint(**p) for p in job.outlier_stability or []] or None,
        continued_from=job.continued_from,
        progress=Progress(step=job.step or 0, total_steps=job.total_steps, epoch=job.epoch),
    )  # fmt: skip


def event_object(row: JobEvent) -> EventObject:
    """The wire form of an event row."""
    return EventObject(
        id=row.id, created_at=row.created_at, level=row.level, message=row.message,
        type=row.type, kind=row.kind, data=row.data,
    )  # fmt: skip


def checkpoint_object(row: Checkpoint) -> CheckpointObject:
    """The wire form of a checkpoint row."""
    return CheckpointObject(
        id=row.id, created_at=row.created_at,
        fine_tuned_model_checkpoint=row.fine_tuned_model_checkpoint, fine_tuning_job_id=row.job_id,
        metrics=row.metrics, step_number=row.step_number, bytes=row.bytes, sha256=row.sha256,
    )  # fmt: skip


def adapter_model_object(row: Adapter) -> ModelObject:
    """A fine-tuned model as a model object."""
    return ModelObject(
        id=row.fine_tuned_model, created=row.created_at, owned_by=row.project_id,
        base_model=row.base_model, fine_tuning_job=row.job_id,
    )  # fmt: skip


def outlier_map_object(
    row: OutlierMap, layers: dict[str, list[int]] | None = None
) -> OutlierMapObject:
    """The wire form of an outlier map row."""
    return OutlierMapObject(
        id=row.id, created_at=row.created_at, base_model=row.base_model,
        dataset_file=row.dataset_file_id, dataset_sha256=row.dataset_sha256,
        strategy=row.strategy, threshold=row.threshold, options=row.options,
        n_layers=row.n_layers, n_outlier_channels=row.n_outlier_channels, layers=layers,
    )  # fmt: skip
