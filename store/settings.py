"""The one settings object: every `QUAFF_*` environment variable is read here and nowhere else."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BASE_MODELS = ("tiny-llama", "HuggingFaceTB/SmolLM2-135M-Instruct")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class Settings(BaseSettings):
    """Service configuration; `database_url` and `broker_url` default to files in `data_dir`."""

    model_config = SettingsConfigDict(env_prefix="QUAFF_", extra="ignore")

    data_dir: Path = Field(default=Path("./.quaff"), description="SQLite store, blobs, broker")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite in data_dir")
    broker_url: str = Field(
        default="", description="Celery broker; default kombu SQLAlchemy/SQLite"
    )
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0, description="upload size limit")
    device: str = Field(default="auto", description="auto, cpu or cuda:N")
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
    broker_visibility_timeout: int = Field(
        default=7200, gt=0, description="Redis: seconds before an unacked task is redelivered"
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

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda:N', got {value!r}")
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
    def blob_dir(self) -> Path:
        """Where artifacts live on disk."""
        return self.data_dir / "blobs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
