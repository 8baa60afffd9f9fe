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
from cli.http import checked
from cli.main import main
from store import jobs
from store.adapters import save_adapter
from store.blobs import BlobStore
from store.events import add_event
from store.models import Job
from store.settings import Settings
from tests.helpers import KeyedProject, chat_jsonl, queued_job
from tests.processes import serve_in_thread

pytestmark = pytest.mark.slow


@pytest.fixture
def base_url(quaff_settings: Settings) -> Iterator[str]:
    """The API on a free loopback port, stopped after the test."""
    with serve_in_thread(create_app(quaff_settings)) as url:
        yield url


def quaff_jobs(base_url: str, key: str, *argv: str) -> int:
    return main(["jobs", "--base-url", base_url, "--api-key", key, *argv])


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
    assert "\r" not in out  # not a terminal: plain lines
    assert quaff_jobs(base_url, keyed_project.key, "events", job_id) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"info  Created fine-tuning job: {job_id}")
    assert lines[-1].endswith("info  Job cancelled by the user")


def test_list_shows_newest_first_with_status_and_paging(
    base_url: str,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    older = queued_job(db_session, quaff_settings, keyed_project)
    newer = queued_job(db_session, quaff_settings, keyed_project)
    jobs.cancel_job(db_session, older)
    assert quaff_jobs(base_url, keyed_project.key, "list") == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "STATUS", "MODEL", "METHOD", "PROGRESS", "ETA", "CREATED"]
    assert first.split()[:5] == [newer.id, "queued", "tiny-llama", "supervised", "0/?"]
    assert second.split()[:2] == [older.id, "cancelled"]
    assert quaff_jobs(base_url, keyed_project.key, "list", "--status", "cancelled") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [older.id]
    assert quaff_jobs(base_url, keyed_project.key, "list", "--limit", "1") == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[1].startswith(newer.id)
    assert f"--after {newer.id}" in captured.err
    assert quaff_jobs(base_url, keyed_project.key, "list", "--after", newer.id) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith(older.id)


def test_events_prints_metrics_with_their_numbers(
    base_url: str,
    keyed_project: KeyedProject,
    db_session: Session,
    quaff_settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = queued_job(db_session, quaff_settings, keyed_project)
    data = {"step": 2, "total_steps": 4, "train_loss": 1.5, "valid_loss": 1.25}
    add_event(db_session, job.id, "Step 2/4: training loss=1.5", type="metrics", data=data)
    db_session.commit()
    assert quaff_jobs(base_url, keyed_project.key, "events", job.id, "--limit", "1") == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith("info  step 2/4 loss 1.5000 val 1.2500")
    assert "--limit 2" in captured.err


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
