"""docker-compose.yml and the Dockerfile, checked without a Docker engine: every `QUAFF_` variable
is a real setting, every command parses with our CLI, and the services share what they must."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import build_parser
from store.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
QUAFF_SERVICES = ("migrate", "api", "worker", "worker-gpu", "infer")


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose allows a mapping or KEY=VALUE items)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_has_the_services() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "api", "worker", "worker-gpu", "infer"}
    assert SERVICES["infer"]["command"] == ["quaff", "infer"]
    assert "quaff-data:/data" in SERVICES["infer"]["volumes"]
    assert SERVICES["migrate"]["command"] == ["quaff", "db", "upgrade"]
    assert SERVICES["migrate"]["restart"] == "no"
    assert SERVICES["worker"]["command"] == ["quaff", "worker"]
    assert SERVICES["worker-gpu"]["profiles"] == ["gpu"]


@pytest.mark.parametrize("name", QUAFF_SERVICES)
def test_every_quaff_variable_is_a_setting(name: str) -> None:
    env = environment(SERVICES[name])
    names = [k for k in env if k.startswith("QUAFF_")]
    assert names
    for variable in names:
        field = variable.removeprefix("QUAFF_").lower()
        assert field in Settings.model_fields, f"{name}: {variable} is not a setting"
    # the variables' strings, as the environment gives them: the settings parse them
    values: dict[str, Any] = {k.removeprefix("QUAFF_").lower(): v for k, v in env.items()}
    settings = Settings(**values)
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.broker_url.startswith("redis://redis:6379/")
    assert str(settings.data_dir) == "/data"


def test_compose_interpolates_no_quaff_variable() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert re.findall(r"\$\{(QUAFF_\w+)", text) == []


@pytest.mark.parametrize("name", QUAFF_SERVICES)
def test_commands_parse_with_the_cli(name: str) -> None:
    command = SERVICES[name]["command"]
    assert command[0] == "quaff"
    args = build_parser().parse_args(command[1:])
    assert callable(args.handler)


def test_api_and_workers_share_the_data_volume_and_wait_for_migrations() -> None:
    for name in ("api", "worker", "worker-gpu"):
        service = SERVICES[name]
        assert "quaff-data:/data" in service["volumes"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "quaff-data" in COMPOSE["volumes"]
    api = build_parser().parse_args(SERVICES["api"]["command"][1:])
    assert (api.host, api.port, api.no_worker, api.no_migrate) == ("0.0.0.0", 8000, True, True)


def test_gpu_worker_reserves_a_gpu() -> None:
    devices = SERVICES["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert environment(SERVICES["worker-gpu"])["QUAFF_DEVICE"] == "cuda:0"
    assert "deploy" not in SERVICES["worker"]


def test_dockerfile_runs_as_non_root_with_a_cuda_build_argument() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.\d+-slim$", text, flags=re.MULTILINE)
    assert "download.pytorch.org/whl/cpu" in text
    assert re.search(r"^ENV .*QUAFF_DATA_DIR=/data", text, flags=re.MULTILINE | re.DOTALL)
    cmd = re.search(r"^CMD \[(.*)\]$", text, flags=re.MULTILINE)
    assert cmd is not None
    argv = [part.strip().strip('"') for part in cmd.group(1).split(",")]
    assert argv[:2] == ["quaff", "serve"]
    build_parser().parse_args(argv[1:])
