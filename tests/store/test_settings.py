"""Settings: defaults in the data directory, `QUAFF_` environment variables, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from store.settings import DEFAULT_BASE_MODELS, Settings


def test_defaults_live_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'quaff.sqlite'}"
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert settings.max_upload_bytes == 512 * 1024 * 1024
    assert settings.device == "auto"
    assert settings.base_models == list(DEFAULT_BASE_MODELS)
    assert settings.blob_dir == tmp_path / "blobs"


def test_environment_variables_use_the_quaff_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUAFF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QUAFF_DATABASE_URL", "postgresql+psycopg://u@h:5432/db")
    monkeypatch.setenv("QUAFF_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("QUAFF_MAX_UPLOAD_BYTES", "1024")
    monkeypatch.setenv("QUAFF_DEVICE", "cuda:1")
    monkeypatch.setenv("QUAFF_BASE_MODELS", '["tiny-llama"]')
    settings = Settings()
    assert settings.data_dir == tmp_path
    assert settings.database_url == "postgresql+psycopg://u@h:5432/db"
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.max_upload_bytes == 1024
    assert settings.device == "cuda:1"
    assert settings.base_models == ["tiny-llama"]


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", ""])
def test_invalid_device_is_refused(device: str) -> None:
    with pytest.raises(ValidationError, match="device must be"):
        Settings(device=device)


def test_upload_limit_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="max_upload_bytes"):
        Settings(max_upload_bytes=0)


@pytest.mark.parametrize(
    ("value", "slots"),
    [("", []), ("cpu:2", ["cpu", "cpu"]), ("cuda:0,cuda:1", ["cuda:0", "cuda:1"])],
)
def test_devices_give_one_slot_per_rank(
    value: str, slots: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUAFF_DEVICES", value)
    assert Settings().device_slots == slots


@pytest.mark.parametrize("value", ["cpu:0", "cuda", "cuda:0,cpu:1", "cuda:0,cuda:0", "gpu:2"])
def test_invalid_devices_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="devices"):
        Settings(devices=value)
