"""`quaff serve`: the key it ensures, and a real run (API + worker child) driven by the SDK."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from cli.local import KEY_FILE
from cli.serve import WorkerSupervisor, _print_snippets, ensure_key, snippets
from store import auth, migrate
from store.db import dispose_engine, session_scope
from store.settings import Settings
from tests.processes import ROOT, children, free_port, wait_for


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(data_dir=tmp_path / "data")
    migrate.upgrade(settings)
    yield settings
    dispose_engine(settings)


def test_ensure_key_creates_one_key_and_reuses_it(
    fresh_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ensure_key(fresh_settings)
    assert key is not None
    assert key.startswith("sk-quaff-")
    assert key in capsys.readouterr().out
    saved = fresh_settings.data_dir / KEY_FILE
    assert saved.read_text().strip() == key
    assert saved.stat().st_mode & 0o777 == 0o600
    assert ensure_key(fresh_settings) == key
    with session_scope(fresh_settings) as session:
        assert len(auth.list_keys(session)) == 1


def test_serve_prints_the_key_only_when_it_creates_it(
    fresh_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = fresh_settings.data_dir / KEY_FILE
    outputs = []
    for _start in range(2):  # what each `quaff serve --ensure-key` prints
        key = ensure_key(fresh_settings)
        _print_snippets("http://127.0.0.1:9/v1", key, saved)
        outputs.append(capsys.readouterr().out)
    assert key is not None
    assert outputs[0].count(key) == 1  # the "Created API key" line
    assert key not in outputs[1]
    assert f'api_key=Path("{saved}").read_text().strip()' in outputs[1]


def test_the_service_commands_create_their_files_owner_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env |= {"QUAFF_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    ran = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.umask(0o022); from cli.main import main; "
         "main(['db', 'upgrade']); sys.exit(main(['keys', 'create', '--project', 'p']))"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    made = [p for p in (tmp_path / "data").rglob("*")]
    assert tmp_path / "data" / "quaff.sqlite" in made
    assert {p.name: oct(p.stat().st_mode & 0o077) for p in made} == {p.name: "0o0" for p in made}


def test_ensure_key_never_adds_a_key_next_to_existing_ones(fresh_settings: Settings) -> None:
    with session_scope(fresh_settings) as session:
        auth.create_key(session, "someone")
    assert ensure_key(fresh_settings) is None
    assert not (fresh_settings.data_dir / KEY_FILE).exists()


def test_snippets_name_the_server_and_read_the_key_file() -> None:
    text = snippets("http://127.0.0.1:9/v1", Path("/d/api-key"))
    assert text.startswith("Dashboard: http://127.0.0.1:9/ui/ ")
    assert (
        'OpenAI(base_url="http://127.0.0.1:9/v1", api_key=Path("/d/api-key").read_text().strip())'
        in text
    )
    curl = 'curl -s http://127.0.0.1:9/v1/fine_tuning/jobs -H "Authorization: Bearer $(cat /d/api'
    assert curl + '-key)"' in text


@pytest.mark.slow
def test_serve_runs_the_api_a_worker_and_an_inference_node_until_interrupted(
    tmp_path: Path,
) -> None:
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc to find the worker process")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(QUAFF_DATA_DIR=str(tmp_path / "data"), QUAFF_DEVICE="cpu", PYTHONPATH=str(ROOT))
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--ensure-key", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def ready() -> bool:
            if serve.poll() is not None:
                pytest.fail((tmp_path / "serve.log").read_text())
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("quaff serve to be ready", ready, timeout=90)
        key = (tmp_path / "data" / KEY_FILE).read_text().strip()
        output = (tmp_path / "serve.log").read_text()
        assert output.count(key) == 1  # printed once, when created; the snippets read the file
        both = wait_for("the worker and the inference node", lambda: len(children(serve.pid)) == 2)
        assert both
        kids = children(serve.pid)
        sdk = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=2)
        rows = [
            {
                "messages": [
                    {"role": "user", "content": f"hi {i}"},
                    {"role": "assistant", "content": "yo"},
                ]
            }
            for i in range(10)
        ]
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        file_id = sdk.files.create(file=("t.jsonl", data), purpose="fine-tune").id
        job = sdk.fine_tuning.jobs.create(
            model="tiny-llama",
            training_file=file_id,
            hyperparameters={"n_epochs": 1, "batch_size": 5},
            extra_body={"lora": {"r": 2}, "training": {"max_seq_length": 32}},
        )
        done = wait_for(
            "the worker to finish the job",
            lambda: sdk.fine_tuning.jobs.retrieve(job.id).status in ("succeeded", "failed"),
        )
        assert done
        assert sdk.fine_tuning.jobs.retrieve(job.id).status == "succeeded"
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=60)
    assert serve.returncode == 0
    for kid in kids:
        assert not Path(f"/proc/{kid}").exists()  # they stopped with serve and were reaped


def _start_serve(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(QUAFF_DATA_DIR=str(tmp_path / "data"), QUAFF_DEVICE="cpu", PYTHONPATH=str(ROOT))
    log_path = tmp_path / "serve.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--no-infer", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )

    def ready() -> bool:
        if serve.poll() is not None:
            pytest.fail(log_path.read_text())
        try:
            up = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False
        return up and bool(children(serve.pid))

    wait_for("quaff serve and its worker", ready, timeout=90)
    return serve, port, log_path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_its_worker_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc to find the worker process")
    serve, _port, log_path = _start_serve(tmp_path)
    (worker,) = children(serve.pid)
    serve.send_signal(sig)
    assert serve.wait(timeout=90) == 0, log_path.read_text()[-3000:]
    assert not Path(f"/proc/{worker}").exists(), "the worker outlived quaff serve"


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *_descendants(child)]
    return found


@pytest.mark.slow
def test_a_killed_serve_leaves_no_worker_or_inference_node(tmp_path: Path) -> None:
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc to find the worker process")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(QUAFF_DATA_DIR=str(tmp_path / "data"), QUAFF_DEVICE="cpu", PYTHONPATH=str(ROOT))
    log_path = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "cli.main", "serve", "--port", str(port)]
    serve = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_path.open("wb"), stderr=-2)
    try:
        wait_for("the worker and the inference node", lambda: len(children(serve.pid)) == 2)
        family = wait_for(  # the worker's pool process too
            "the worker's pool", lambda: len(d := _descendants(serve.pid)) >= 3 and d, timeout=90
        )
    finally:
        serve.kill()  # kill -9
        serve.wait()
    wait_for(
        "every child of the killed serve to exit",
        lambda: not any(Path(f"/proc/{p}").exists() for p in family),
        timeout=60,
    )
    again = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_path.open("ab"), stderr=-2)
    try:
        wait_for("the restarted serve's two children", lambda: len(children(again.pid)) == 2)
        wait_for("the restarted serve's API", lambda: _answers(port), timeout=90)
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=90)
    assert again.returncode == 0, log_path.read_text()[-3000:]


@pytest.mark.slow
def test_serve_restarts_a_worker_that_died(tmp_path: Path) -> None:
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux /proc to find the worker process")
    serve, _port, log_path = _start_serve(tmp_path)
    try:
        (first,) = children(serve.pid)
        os.killpg(first, signal.SIGKILL)
        new = wait_for(
            "a new worker",
            lambda: [p for p in children(serve.pid) if p != first and Path(f"/proc/{p}").exists()],
            timeout=60,
        )
        assert new
        assert f"worker {first} exited with code -9; starting a new one in 1s" in (
            log_path.read_text()
        )
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=90)
    assert not any(Path(f"/proc/{p}").exists() for p in new)


@pytest.mark.slow
def test_supervisor_backs_off_between_restarts() -> None:
    started: list[float] = []

    def failing() -> subprocess.Popen[bytes]:
        started.append(time.monotonic())
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    supervisor = WorkerSupervisor(stop_seconds=5, start=failing)
    supervisor.start()
    wait_for("three starts", lambda: len(started) >= 3, timeout=30)
    supervisor.stop()
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert gaps[1] > gaps[0]  # 1 s, then 2 s
    assert supervisor.restarts >= 2
    assert not supervisor.is_alive()
