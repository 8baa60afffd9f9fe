"""The one settings object: every `QUAFF_*` environment variable is read here and nowhere else."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_MODELS = ("tiny-llama", "HuggingFaceTB/SmolLM2-135M-Instruct")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_DEVICES = re.compile(r"^(cpu:[1-9]\d*|cuda:\d+(,cuda:\d+)*)$")


class Settings(BaseSettings):
    """Service configuration; `database_url` and `broker_url` default to files in `data_dir`."""

    model_config = SettingsConfigDict(env_prefix="QUAFF_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default=Path("./.quaff"), description="SQLite store, blobs, broker")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir")
    broker_url: str = Field(
        default="", description="Celery broker; default kombu SQLAlchemy/SQLite"
    )
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0, description="upload size limit")
    inline_validation_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=0,
        description="uploads up to this size are validated before the reply; larger ones after "
        "it (status uploaded, then processed or error)",
    )
    device: str = Field(default="auto", description="auto, cpu or cuda:N")
    devices: str = Field(
        default="",
        description="devices one job may train on together: cuda:0,cuda:1 or cpu:N (N CPU "
        "processes); default: the one `device`",
    )
    rank_restarts: int = Field(
        default=2,
        ge=0,
        description="times a multi-device job's process group is relaunched "
        "from its last checkpoint after a rank dies",
    )
    base_models: list[str] = Field(default_factory=lambda: list(DEFAULT_BASE_MODELS))
    event_poll_seconds: float = Field(default=0.5, gt=0, description="SSE store poll interval")
    worker_heartbeat_seconds: float = Field(
        default=10.0, gt=0, description="how often a worker refreshes its job's lease"
    )
    worker_lease_seconds: float = Field(
        default=120.0, gt=0, description="a running job silent this long is taken over"
    )
    safety_checkpoint_seconds: float = Field(
        default=600.0,
        gt=0,
        description="a running job checkpoints at least this often, so a crash loses little",
    )
    warm_bases_mb: int = Field(
        default=8192,
        ge=0,
        description="a worker keeps the bases it trained on, converted, in up to this much memory "
        "(MiB; least recently used dropped first; 0: none kept)",
    )
    warm_base_idle_seconds: float = Field(
        default=1800.0, gt=0, description="a warm base unused this long is released"
    )
    tokenized_cache_entries: int = Field(
        default=8, ge=0, description="tokenised datasets a worker keeps for the next job"
    )
    broker_visibility_timeout: int = Field(
        default=7200, gt=0, description="Redis: seconds before an unacked task is redelivered"
    )
    train_threads: int = Field(
        default=0, ge=0, description="CPU threads of one training (0: cores / trainings per host)"
    )
    trainings_per_host: int = Field(
        default=1, ge=1, description="trainings this host runs at once (workers on it)"
    )
    client_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("QUAFF_API_KEY", "OPENAI_API_KEY"),
        description="the key `quaff jobs` sends (default: the local server's key file)",
    )
    client_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("QUAFF_BASE_URL", "OPENAI_BASE_URL"),
        description="the API root `quaff jobs` calls (default: the local server's)",
    )
    # inference processes (`quaff infer`); see infer/ and docs in the README
    infer_host: str = Field(default="127.0.0.1", description="bind address of `quaff infer`")
    infer_port: int = Field(default=0, ge=0, le=65535, description="its port (0: a free one)")
    infer_url: str = Field(
        default="", description="URL the API reaches it at (default http://HOST:PORT)"
    )
    infer_device: str = Field(default="", description="auto, cpu or cuda:N (default: device)")
    infer_dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="dtype of unquantized bases served"
    )
    infer_adapters: Literal["merged", "shared", "int8"] = Field(
        default="merged",
        description="how a fine-tuned model is served: merged into its own copy of the "
        "unquantized base (fastest, the merged export's answers), shared (unmerged LoRA over one "
        "unquantized base) or int8 (the Quaff training base: least memory, slowest)",
    )
    infer_memory_budget_mb: int = Field(
        default=4096, gt=0, description="bases + adapters kept loaded; least recently used go"
    )
    infer_queue_size: int = Field(default=32, gt=0, description="requests waiting; then 429")
    infer_max_batch: int = Field(default=8, gt=0, description="sequences generated together")
    infer_heartbeat_seconds: float = Field(default=2.0, gt=0, description="node registry beat")
    infer_lease_seconds: float = Field(
        default=10.0, gt=0, description="a node silent this long is not sent requests"
    )
    infer_retry_after_seconds: int = Field(default=1, gt=0, description="Retry-After on a 429")
    infer_timeout_seconds: float = Field(
        default=600.0, gt=0, description="API-side limit for one forwarded request"
    )
    infer_yield_to_training: bool = Field(
        default=True, description="on a shared device, training pauses mid-step for chat"
    )
    # The request path: one gate slot = one database connection = at most one worker thread, so
    # the pool, the thread pool and the gate are sized together from `db_pool_size`.
    db_pool_size: int = Field(
        default=8, ge=1, le=256, description="API database connections (= concurrent requests)"
    )
    db_busy_timeout_ms: int = Field(
        default=5000, ge=0, description="SQLite: how long a write waits for the lock"
    )
    request_wait_seconds: float = Field(
        default=5.0, gt=0, description="longest wait for a free slot before answering 503"
    )
    max_waiting_requests: int = Field(
        default=2000, ge=0, description="requests allowed to wait for a slot; beyond: 503 at once"
    )
    max_pending_requests: int = Field(
        default=128,
        ge=1,
        description="requests received but not yet answered; beyond: 503 at once (load shedding)",
    )
    access_log: bool = Field(
        default=True,
        description="one log line per answered request (uvicorn's access log); off, a cached "
        "job poll costs the API about half the CPU",
    )
    poll_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        description="a job poll (GET /v1/fine_tuning/jobs/{id}) repeated within this time is "
        "answered from memory (0: never)",
    )
    max_pending_per_key: int = Field(
        default=32,
        ge=1,
        description="requests of one API key received but not yet answered; beyond: 503",
    )
    shed_delay_seconds: float = Field(
        default=0.5,
        ge=0,
        description="a load-shedding 503 is held back this long (a client that retries at once "
        "cannot spend the server's CPU on refusals)",
    )
    retry_after_seconds: int = Field(
        default=1, ge=1, description="Retry-After of a 503 (busy or database unavailable)"
    )
    auth_cache_seconds: float = Field(
        default=5.0, ge=0, description="how long a key -> project lookup is reused (0: never)"
    )
    max_streams_per_key: int = Field(
        default=16, ge=1, description="concurrent event streams one API key may hold"
    )
    stream_keepalive_seconds: float = Field(
        default=15.0, gt=0, description="an idle event stream sends a comment this often"
    )
    max_json_bytes: int = Field(default=1024 * 1024, gt=0, description="JSON request body limit")
    orphan_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="a temporary or rowless blob older than this is removed by the sweeps",
    )
    worker_stop_seconds: float = Field(
        default=30.0, gt=0, description="`quaff serve`: how long a stopping worker may take"
    )
    worker_nice: int = Field(
        default=10, ge=0, le=19, description="`quaff serve`: the worker's CPU niceness"
    )

    # python graders (quaff_core/graders/sandbox.py): limits per sample
    grader_cpu_seconds: int = Field(
        default=10, ge=1, le=600, description="CPU seconds a python grader may use per sample"
    )
    grader_wall_seconds: float = Field(
        default=20.0, gt=0, le=600, description="wall-clock seconds per sample of a python grader"
    )
    grader_memory_mb: int = Field(
        default=1024, ge=64, description="address space of a python grader's process, in MiB"
    )
    # webhooks (store/webhook_delivery.py): sent by the worker's main process
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="hosts or CIDR networks webhook endpoints may use besides loopback ('*': any)",
    )
    webhook_timeout_seconds: float = Field(
        default=10.0, gt=0, description="how long one webhook delivery attempt may take"
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=32, description="tries of one webhook delivery before it is failed"
    )
    webhook_retry_seconds: float = Field(
        default=5.0, gt=0, description="wait before a webhook's first retry; doubles each try"
    )
    webhook_poll_seconds: float = Field(
        default=1.0, gt=0, description="how often the sender looks for due webhook deliveries"
    )

    @field_validator("device", "infer_device")
    @classmethod
    def _check_device(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name == "infer_device" and value == "":
            return value
        if not _DEVICE.match(value):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda:N', got {value!r}")
        return value

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: str) -> str:
        value = value.replace(" ", "")
        if value and not _DEVICES.match(value):
            raise ValueError(f"devices must be like 'cuda:0,cuda:1' or 'cpu:2', got {value!r}")
        if len(set(value.split(","))) != len(value.split(",")):
            raise ValueError(f"devices names a device twice: {value!r}")
        return value

    @field_validator("base_models")
    @classmethod
    def _check_base_models(cls, value: list[str]) -> list[str]:
        if not value or any(not m.strip() for m in value):
            raise ValueError("base_models must be a non-empty list of model ids")
        return value

    @model_validator(mode="after")
    def _fill_urls(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'quaff.sqlite'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"
        return self

    @property
    def api_threads(self) -> int:
        """Worker threads of the API: one per gate slot, plus some for streamed uploads and
        downloads, which hold no slot."""
        return self.db_pool_size + 8

    @property
    def device_slots(self) -> list[str]:
        """The devices a job's ranks use (`devices`), one per rank; [] means the one `device`."""
        if self.devices.startswith("cpu:"):
            return ["cpu"] * int(self.devices.split(":", 1)[1])
        return self.devices.split(",") if self.devices else []

    @property
    def blob_dir(self) -> Path:
        """Where artifacts live on disk."""
        return self.data_dir / "blobs"

    @property
    def inductor_cache_dir(self) -> Path:
        """Where torch.compile keeps generated code between jobs."""
        return self.data_dir / "inductor-cache"

    @property
    def resolved_infer_device(self) -> str:
        """The device setting inference uses (`infer_device`, else `device`)."""
        return self.infer_device or self.device


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def variable_name(field: str) -> str:
    """The environment variable that sets `field` (its first alias, else QUAFF_<FIELD>)."""
    info = Settings.model_fields.get(field)
    choices = getattr(info.validation_alias, "choices", None) if info is not None else None
    return str(choices[0]) if choices else f"QUAFF_{field.upper()}"


def settings_problem(exc: ValidationError) -> str:
    """One line naming each bad environment variable and why it was refused."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error.get("loc") else ""
        where = variable_name(field) if field else "QUAFF_* settings"
        parts.append(f"{where}: {error.get('msg', 'invalid value')}")
    return "invalid setting " + "; ".join(parts)
