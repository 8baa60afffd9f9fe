"""The `served` fixture: `quaff api`, `quaff worker` and `quaff infer` as real processes, with
three tiny-llama jobs trained through the SDK (embedded SQLite store and broker)."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from store import migrate
from store.auth import create_key
from store.db import dispose_engine, session_factory
from store.settings import Settings
from tests.processes import Service, service_env, wait_for


def chat_rows(n: int, offset: int = 0) -> bytes:
    """`n` arithmetic chat examples."""
    rows = [
        {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"{2 * i}"}]}
        for i in range(offset, offset + n)
    ]  # fmt: skip
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@dataclass
class Served:
    """The running service and the jobs trained on it."""

    svc: Service
    sdk: OpenAI
    plain: Any  # quantization none, 2 checkpoints
    quaff: Any  # Quaff int8 base
    quaff_twin: Any  # Quaff int8 base, same outlier map as `quaff`
    validation_file: str
    tmp: Path

    def adapter_dir(self, job_id: str, target: Path) -> Path:
        """Download and unpack a job's adapter archive."""
        response = httpx.get(
            f"{self.svc.base_url}/fine_tuning/jobs/{job_id}/adapter",
            headers={"Authorization": f"Bearer {self.svc.api_key}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
            tar.extractall(target, filter="data")
        return target


def _train(svc: Service, sdk: OpenAI, file_id: str, quantization: dict[str, Any], seed: int,
           n_checkpoints: int = 1) -> Any:  # fmt: skip
    job = sdk.fine_tuning.jobs.create(
        model="tiny-llama", training_file=file_id, seed=seed, suffix=f"s{seed}",
        hyperparameters={"n_epochs": 2, "batch_size": 4},
        extra_body={"lora": {"r": 4, "alpha": 8}, "quantization": quantization,
                    "training": {"max_seq_length": 48, "learning_rate": 3e-3,
                                 "n_checkpoints": n_checkpoints}},
    )  # fmt: skip

    def done() -> Any:
        current = sdk.fine_tuning.jobs.retrieve(job.id)
        if current.status in ("failed", "cancelled"):
            pytest.fail(f"job {job.id} {current.status}: {current.error}\n{svc.log_tail()}")
        return current if current.status == "succeeded" else None

    return wait_for(f"job {job.id} to succeed", done, timeout=240)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The three processes, a project key and three trained jobs; stopped afterwards."""
    root = tmp_path_factory.mktemp("served")
    settings = Settings(data_dir=root / "data")
    migrate.upgrade(settings)
    with session_factory(settings)() as session:
        _row, key = create_key(session, f"infer-{uuid.uuid4().hex[:8]}")
    env = service_env(settings)
    env["QUAFF_INFER_HEARTBEAT_SECONDS"] = "0.5"
    svc = Service(name="infer", settings=settings, env=env, logs=root, api_key=key)
    try:
        svc.start_api()
        svc.start_worker()
        svc.start_infer()
        sdk = svc.sdk()
        train = sdk.files.create(file=("train.jsonl", chat_rows(16)), purpose="fine-tune").id
        valid = sdk.files.create(file=("valid.jsonl", chat_rows(6, 50)), purpose="fine-tune").id
        quaff = {"method": "quaff", "outlier_strategy": "top_abs", "outlier_max_ratio": 0.05}
        plain = _train(svc, sdk, train, {"method": "none"}, seed=1, n_checkpoints=2)
        first = _train(svc, sdk, train, quaff, seed=2)
        twin = _train(svc, sdk, train, {**quaff, "outlier_map": first.model_extra["outlier_map"]},
                      seed=3)  # fmt: skip
        yield Served(svc, sdk, plain, first, twin, valid, root)
    finally:
        svc.stop()
        dispose_engine(settings)
