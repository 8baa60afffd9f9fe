"""`quaff jobs` against a real uvicorn on a loopback port (no worker: jobs stay queued)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from api.main import create_app
from cli.common import CliError
from cli.jobs import EventPrinter, checked, progress_line
from cli.main import main
from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.models import Job
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl
from tests.processes import serve_in_thread

pytestmark = pytest.mark.slow


@pytest.fixture
def base_url(quaff_settings: Settings) -> Iterator[str]:
    """The API on a free loopback port, stopped after the test."""
    with serve_in_thread(create_app(quaff_settings)) as url:
        yield url


def quaff_jobs(base_url: str, key: str, *argv: str) -> int:
    return main(["jobs", "--base-url", base_url, "--api-key", key, *argv])


def test_progress_line() -> None:
    assert progress_line({"step": 3, "total_steps": 6, "train_loss": 1.23456}) == (
        f"[{'#' * 15}{'-' * 15}] step 3/6 loss 1.2346"
    )
    assert progress_line({"step": 0, "total_steps": None}) == f"[{'-' * 30}] step 0/0"


def test_event_printer_ends_the_bar_before_a_message() -> None:
    out = io.StringIO()
    show = EventPrinter(out)
    show({"type": "metrics", "data": {"step": 1, "total_steps": 2, "train_loss": 2.0}})
    show({"type": "message", "level": "info", "message": "Checkpoint saved at step 1"})
    assert out.getvalue() == (
        f"\r[{'#' * 15}{'-' * 15}] step 1/2 loss 2.0000\ninfo: Checkpoint saved at step 1\n"
    )


def test_checked_names_the_param() -> None:
    body = {"error": {"message": "bad r", "type": "invalid_request_error", "param": "lora.r"}}
    with pytest.raises(CliError, match=r"HTTP 400: bad r \(param: lora.r\)"):
        checked(httpx.Response(400, json=body))


def test_missing_key_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert main(["jobs", "--api-key", "", "get", "ftjob-x"]) == 1
    assert "no API key" in capsys.readouterr().err


def test_create_get_cancel_and_watch(
    base_url: str,
    keyed_project: KeyedProject,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train = tmp_path / "train.jsonl"
    train.write_bytes(chat_jsonl(10))
    code = quaff_jobs(
        base_url,
        keyed_project.key,
        "create",
        "--model",
        "tiny-llama",
        "--file",
        str(train),
        "--epochs",
        "2",
        "--lora",
        '{"r": 4}',
        "--suffix",
        "cli",
    )
    assert code == 0
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith("ftjob-")
    assert quaff_jobs(base_url, keyed_project.key, "get", job_id) == 0
    job = json.loads(capsys.readouterr().out)
    assert (job["status"], job["hyperparameters"]["n_epochs"], job["lora"]["r"]) == ("queued", 2, 4)
    assert job["suffix"] == "cli"
    assert quaff_jobs(base_url, keyed_project.key, "cancel", job_id) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert quaff_jobs(base_url, keyed_project.key, "watch", job_id) == 1
    out = capsys.readouterr().out
    assert f"info: Created fine-tuning job: {job_id}\n" in out
    assert out.endswith(f"job {job_id} cancelled\n")


def test_create_rejects_a_bad_option(
    base_url: str, keyed_project: KeyedProject, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = tmp_path / "train.jsonl"
    train.write_bytes(chat_jsonl(10))
    argv = ["create", "--model", "tiny-llama", "--file", str(train), "--lora", '{"r": 0}']
    assert quaff_jobs(base_url, keyed_project.key, *argv) == 1
    assert "(param: lora.r)" in capsys.readouterr().err


def test_download_unpacks_the_adapter(
    base_url: str,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    train = tmp_path / "train.jsonl"
    train.write_bytes(chat_jsonl(10))
    argv = ["create", "--model", "tiny-llama", "--file", str(train)]
    assert quaff_jobs(base_url, keyed_project.key, *argv) == 0
    job_id = capsys.readouterr().out.strip()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        data = b'{"peft_type": "LORA"}'
        info = tarfile.TarInfo("adapter_config.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    job = db_session.get(Job, job_id)
    assert job is not None
    jobs.claim_job(db_session, job_id, "test:1")
    save_adapter(db_session, BlobStore(quaff_settings.blob_dir), job, archive.getvalue())
    target = tmp_path / "out"
    assert quaff_jobs(base_url, keyed_project.key, "download", job_id, "-o", str(target)) == 0
    assert (target / "adapter_config.json").read_bytes() == data
    assert capsys.readouterr().out.strip() == f"1 files in {target}"
    assert quaff_jobs(base_url, keyed_project.key, "download", "ftjob-none", "-o", str(target)) == 1
    assert "HTTP 404" in capsys.readouterr().err
