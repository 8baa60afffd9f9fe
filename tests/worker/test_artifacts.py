"""Archives and the metrics CSV; the job options turned into a TrainConfig."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from store.job_options import resolve_options
from store.models import Job
from worker.artifacts import metrics_csv, pack_dir, unpack
from worker.options import JobFailure, train_config


def test_pack_and_unpack_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "ckpt"
    (source / "nested").mkdir(parents=True)
    (source / "adapter_config.json").write_text("{}")
    (source / "nested" / "w.bin").write_bytes(b"\x00\x01")
    archive = pack_dir(source, tmp_path / "out" / "a.tar.gz")
    target = unpack(archive, tmp_path / "back")
    assert (target / "adapter_config.json").read_text() == "{}"
    assert (target / "nested" / "w.bin").read_bytes() == b"\x00\x01"


def test_pack_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pack_dir(tmp_path / "nope", tmp_path / "a.tar.gz")


def test_metrics_csv_merges_train_and_eval_rows_of_a_step() -> None:
    rows: list[dict[str, float | None]] = [
        {"step": 2, "epoch": 1.0, "train_loss": 1.5, "learning_rate": 1e-4},
        {"step": 1, "epoch": 0.5, "train_loss": 2.0, "learning_rate": 2e-4},
        {"step": 2, "epoch": 1.0, "valid_loss": 1.7, "valid_mean_token_accuracy": None},
    ]
    table = list(csv.DictReader(io.StringIO(metrics_csv(rows).decode())))
    assert [r["step"] for r in table] == ["1", "2"]
    assert table[1]["train_loss"] == "1.5"
    assert table[1]["valid_loss"] == "1.7"
    assert table[0]["valid_loss"] == ""


def job_with(body: dict[str, object]) -> Job:
    options = resolve_options(body)
    return Job(
        id="ftjob-x",
        model="tiny-llama",
        seed=3,
        hyperparameters=options.hyperparameters,
        lora=options.lora,
        quantization=options.quantization,
        training=options.training,
    )


def test_train_config_is_the_config_create_job_checked() -> None:
    body = {
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "training": {"n_checkpoints": 4, "max_seq_length": 256},
        "seed": 3,
    }
    config = train_config(job_with(body))
    assert config == resolve_options(body).config
    assert (config.n_epochs, config.batch_size, config.seed) == (2, 4, 3)
    assert (config.lora_r, config.lora_alpha) == (8, 16.0)
    assert config.lora_target_modules == ("q_proj", "v_proj")
    assert config.save_every(config.total_steps(20)) == 3
    assert config.eval_every(10) == 0
    assert config.max_seq_length == 256
    assert config.quantization == "quaff"


def test_fractional_lora_alpha_trains() -> None:
    assert train_config(job_with({"lora": {"alpha": 2.5}})).lora_alpha == 2.5


def test_a_stored_option_the_spec_now_refuses_is_a_job_failure() -> None:
    job = job_with({})
    job.lora = {**job.lora, "r": 0}
    with pytest.raises(JobFailure) as failure:
        train_config(job)
    assert failure.value.param == "lora.r"
    assert failure.value.code == "invalid_hyperparameters"
