"""SQLAlchemy 2.0 tables: projects, keys, files, jobs, events, checkpoints, maps, adapters,
inference nodes, evaluations, merged exports and webhooks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(40)


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints the same way."""

    metadata = MetaData(naming_convention=NAMING)


class Project(Base):
    """A tenant: keys, files, jobs and maps belong to exactly one project."""

    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """An API key, stored only as its sha256; `prefix` is the first characters, for display."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)


class File(Base):
    """An uploaded dataset or a result file; bytes live in the blob store under `blob_key`."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_project_id_id", "project_id", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(512))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    status_details: Mapped[str | None] = mapped_column(Text)
    blob_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    data_format: Mapped[str | None] = mapped_column(String(32))
    n_examples: Mapped[int | None] = mapped_column(Integer)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, index=True)


class Job(Base):
    """A fine-tuning job: the request, its resolved options, progress, result and worker lease."""

    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (
        Index("ix_fine_tuning_jobs_project_id_id", "project_id", "id"),
        Index("ix_fine_tuning_jobs_status_heartbeat_at", "status", "heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(255))
    training_file_id: Mapped[str] = mapped_column(ID, index=True)
    validation_file_id: Mapped[str | None] = mapped_column(ID, index=True)
    method: Mapped[str] = mapped_column(String(16), default="supervised")
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    lora: Mapped[dict[str, Any]] = mapped_column(JSON)
    peft: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # a reinforcement job's grader, as OpenAI's grader object
    grader: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    quantization: Mapped[dict[str, Any]] = mapped_column(JSON)
    training: Mapped[dict[str, Any]] = mapped_column(JSON)
    runtime: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # the initial outlier map's recall at each checkpoint: [{"step": int, "recall": float}]
    outlier_stability: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(BigInteger)
    suffix: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON(none_as_null=True))
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    epoch: Mapped[float | None] = mapped_column(Float)
    estimated_finish: Mapped[int | None] = mapped_column(BigInteger)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(255), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_param: Mapped[str | None] = mapped_column(String(128))
    result_files: Mapped[list[str]] = mapped_column(JSON)
    outlier_map_id: Mapped[str | None] = mapped_column(
        ForeignKey("outlier_maps.id", ondelete="SET NULL")
    )
    # the fine-tuned model or checkpoint name this job continues from (`model` is its base)
    continued_from: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int | None] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class JobEvent(Base):
    """One job event (`message` or `metrics`); ids sort by time, so newest first is id desc.

    `step` is set on metrics events only: one per step and job (a re-trained step replaces it).
    """

    __tablename__ = "fine_tuning_job_events"
    __table_args__ = (
        Index("ix_fine_tuning_job_events_job_id_id", "job_id", "id"),
        UniqueConstraint("job_id", "step", name="uq_fine_tuning_job_events_job_id_step"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32), server_default="message")
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    step: Mapped[int | None] = mapped_column(Integer)


class Checkpoint(Base):
    """An adapter snapshot saved at a training step (blob: adapter `.tar.gz`).

    `safety` marks one the worker took on its own (to lose little on a crash, or to hand the job
    back) rather than one the job asked for; only the newest of those is kept.
    """

    __tablename__ = "fine_tuning_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "step_number"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    step_number: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    safety: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    fine_tuned_model_checkpoint: Mapped[str] = mapped_column(String(255))
    blob_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class OutlierMap(Base):
    """A calibration result (blob: JSON with per-layer outlier channel indices), reusable by key."""

    __tablename__ = "outlier_maps"
    __table_args__ = (
        Index(
            "ix_outlier_maps_lookup", "project_id", "base_model", "dataset_sha256", "options_hash"
        ),
        Index("ix_outlier_maps_project_id_id", "project_id", "id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    base_model: Mapped[str] = mapped_column(String(255))
    dataset_file_id: Mapped[str | None] = mapped_column(ID)
    dataset_sha256: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(32))
    threshold: Mapped[float | None] = mapped_column(Float)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    options_hash: Mapped[str] = mapped_column(String(64))
    n_layers: Mapped[int] = mapped_column(Integer)
    n_outlier_channels: Mapped[int] = mapped_column(Integer)
    blob_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class Adapter(Base):
    """The final PEFT adapter of a succeeded job (blob: `.tar.gz`)."""

    __tablename__ = "adapters"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(
        ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"), unique=True
    )
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    fine_tuned_model: Mapped[str] = mapped_column(String(255), unique=True)
    base_model: Mapped[str] = mapped_column(String(255))
    blob_key: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class InferNode(Base):
    """A running `quaff infer` process: where the API forwards generation, and what it holds."""

    __tablename__ = "infer_nodes"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    url: Mapped[str] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(32))
    queue_depth: Mapped[int] = mapped_column(Integer, default=0)
    queue_size: Mapped[int] = mapped_column(Integer)
    loaded: Mapped[list[str]] = mapped_column(JSON)
    started_at: Mapped[int] = mapped_column(BigInteger)
    heartbeat_at: Mapped[float] = mapped_column(Float, index=True)


class Evaluation(Base):
    """Scores of a job's models (base, tuned, checkpoints) on a validation file."""

    __tablename__ = "fine_tuning_evaluations"
    __table_args__ = (Index("ix_fine_tuning_evaluations_job_id_id", "job_id", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    file_id: Mapped[str] = mapped_column(ID)
    status: Mapped[str] = mapped_column(String(16))
    models: Mapped[list[str]] = mapped_column(JSON)
    results: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    error_message: Mapped[str | None] = mapped_column(Text)
    node_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)


class MergedExport(Base):
    """An export of an adapter (blob: a `.tar.gz`): `merged` into its unquantized base as a
    transformers dir, that merged model as GGUF (`gguf_f16`, `gguf_q8_0`), or `gguf_lora`."""

    __tablename__ = "merged_exports"
    __table_args__ = (UniqueConstraint("job_id", "source_sha256", "format"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("fine_tuning_jobs.id", ondelete="CASCADE"))
    step: Mapped[int | None] = mapped_column(Integer)
    source_sha256: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16), default="merged", server_default="merged")
    status: Mapped[str] = mapped_column(String(16))
    blob_key: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_message: Mapped[str | None] = mapped_column(Text)
    node_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)


class WebhookEndpoint(Base):
    """A URL of a project's that receives signed events (`secret`: the `whsec_...` key)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_project_id_id", "project_id", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    url: Mapped[str] = mapped_column(String(2048))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(128))
    # after a rotation that keeps the old secret: deliveries are signed with both until then
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_until: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """One event for one endpoint: written with the job's new state, then sent and retried.

    `status` is pending, delivered or failed (no more tries); `payload` is the exact JSON sent.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ID)
    event_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(ID)
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float | None] = mapped_column(Float, index=True)
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
