"""`quaff serve`: the REST API on 127.0.0.1:8000 plus one worker and one inference process."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from cli.children import ChildRecord, die_with_parent, stop_survivors
from cli.common import SHUTDOWN_GRACE_SECONDS, CliError
from cli.local import KEY_FILE, announce, key_path, withdraw
from store.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"
MAX_BACKOFF = 60.0
STABLE_SECONDS = 60.0
SDK_SNIPPET = """\
import json
from pathlib import Path

from openai import OpenAI

client = OpenAI(base_url="{base_url}", api_key=Path("{key_file}").read_text().strip())
rows = [
    {{"messages": [{{"role": "user", "content": f"What is {{i}} plus {{i}}?"}},
                  {{"role": "assistant", "content": f"{{i}} plus {{i}} is {{2 * i}}."}}]}}
    for i in range(20)
]
data = "".join(json.dumps(row) + "\\n" for row in rows).encode()
training_file = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
job = client.fine_tuning.jobs.create(
    model="tiny-llama",
    training_file=training_file.id,
    method={{"type": "supervised", "supervised": {{"hyperparameters": {{"n_epochs": 1}}}}}},
    extra_body={{"lora": {{"r": 8}}, "training": {{"max_seq_length": 128}}}},
)
print(job.id, job.status)
"""
CURL_LINE = 'curl -s {base_url}/fine_tuning/jobs -H "Authorization: Bearer $(cat {key_file})"'
ASK_SNIPPET = """\
from pathlib import Path

from openai import OpenAI

client = OpenAI(base_url="{base_url}", api_key=Path("{key_file}").read_text().strip())
job = client.fine_tuning.jobs.list(limit=1).data[0]  # once it has succeeded
reply = client.chat.completions.create(
    model=job.fine_tuned_model or "tiny-llama",
    messages=[{{"role": "user", "content": "What is 3 plus 3?"}}],
    max_tokens=16,
)
print(reply.choices[0].message.content)
"""
ASK_CURL = (
    'curl -s {base_url}/chat/completions -H "Authorization: Bearer $(cat {key_file})" '
    '-H "Content-Type: application/json" -d \'{{"model": "tiny-llama", "messages": '
    '[{{"role": "user", "content": "What is 3 plus 3?"}}], "max_tokens": 16}}\''
)


def register(subparsers: Any) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser("serve", help="serve the API and run one training worker")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--no-worker", action="store_true", help="serve the API only")
    parser.add_argument(
        "--no-infer", action="store_true", help="start no inference node (`quaff infer`)"
    )
    parser.add_argument("--no-migrate", action="store_true", help="skip `quaff db upgrade`")
    parser.add_argument(
        "--ensure-key",
        action="store_true",
        help=f"create an API key if none exists (kept in DATA_DIR/{KEY_FILE}, printed once, when "
        "it is created) and print an openai SDK snippet and a curl line that read it from there",
    )
    parser.set_defaults(handler=run)


def ensure_key(settings: Settings) -> str | None:
    """The saved key; a new one (saved, mode 600) when no active key exists; None otherwise."""
    from store import auth  # the database layer loads only when `quaff serve` runs
    from store.db import session_scope

    saved = key_path(settings)
    with session_scope(settings) as session:
        active = [k for k, _project in auth.list_keys(session) if k.revoked_at is None]
        if saved.is_file():
            key = saved.read_text(encoding="utf-8").strip()
            if any(k.key_hash == auth.hash_key(key) for k in active):
                return key
        if active:
            return None
        _row, key = auth.create_key(session, DEFAULT_PROJECT)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(key + "\n", encoding="utf-8")
    saved.chmod(0o600)
    print(f"Created API key for project '{DEFAULT_PROJECT}' (saved in {saved}):\n  {key}")
    return key


def snippets(base_url: str, key_file: Path) -> str:
    """The dashboard's address, a Python snippet (official openai SDK) and a curl line; they read
    the key from `key_file`, so the key itself is not printed (nor kept in logs)."""
    key = str(key_file)
    return (
        f"Dashboard: {base_url.removesuffix('/v1')}/ui/ (sign in with the API key)\n\n"
        "Fine-tune with the openai SDK (pip install openai):\n\n"
        + SDK_SNIPPET.format(base_url=base_url, key_file=key)
        + "\nList jobs with curl:\n\n"
        + CURL_LINE.format(base_url=base_url, key_file=key)
        + "\n\nAsk your model with the openai SDK:\n\n"
        + ASK_SNIPPET.format(base_url=base_url, key_file=key)
        + "\nAsk it with curl:\n\n"
        + ASK_CURL.format(base_url=base_url, key_file=key)
        + "\n"
    )


def start_worker(command: str = "worker", nice: int = 0) -> subprocess.Popen[bytes]:
    """`quaff worker` (or `infer`) in its own process group, with this environment (so the same
    settings), at `nice` lower CPU priority (training yields the cores to the API's requests);
    it gets SIGTERM when this process dies."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", command],
        start_new_session=True,
        preexec_fn=die_with_parent(),  # only prctl and getppid run before exec
    )
    if nice:
        with contextlib.suppress(OSError):  # its pool forks later and inherits the priority
            os.setpriority(os.PRIO_PGRP, process.pid, nice)
    return process


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the worker (it checkpoints its job and hands it back), then SIGKILL what is left
    of its group after `timeout`; a cut job resumes elsewhere from its last checkpoint."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("worker %d did not stop in %.0fs; killing it", process.pid, timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


class WorkerSupervisor(threading.Thread):
    """Keeps one worker running: a worker that dies is restarted after a back-off (1 s, doubling
    to `MAX_BACKOFF`, reset once a worker has lived `STABLE_SECONDS`); `stop()` stops it."""

    def __init__(
        self,
        *,
        stop_seconds: float,
        start: Callable[[], subprocess.Popen[bytes]] = start_worker,
    ) -> None:
        super().__init__(name="quaff-worker-supervisor", daemon=True)
        self.stop_seconds, self.start_process = stop_seconds, start
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        """Start the worker; wait for it; restart it until stopped."""
        delay = 1.0
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                self.process = self.start_process()
            born = time.monotonic()
            code = self.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - born >= STABLE_SECONDS:
                delay = 1.0
            self.restarts += 1
            logger.warning(
                "worker %d exited with code %s; starting a new one in %.0fs (restart %d); its "
                "job, if any, is taken over once its lease expires",
                self.process.pid, code, delay, self.restarts,
            )  # fmt: skip
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, MAX_BACKOFF)

    def stop(self) -> None:
        """Stop supervising and stop the worker (SIGTERM, then SIGKILL after `stop_seconds`)."""
        with self._lock:
            self._stopping.set()
            process = self.process
        if process is not None:
            stop_worker(process, self.stop_seconds)
        self.join(timeout=5)


class _Stop(Exception):
    """SIGTERM or SIGINT arrived: shut down."""


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def run(args: argparse.Namespace) -> int:
    """Migrate, start the worker, serve the API until interrupted, then stop the worker."""
    settings = get_settings()
    stop_survivors(settings, settings.worker_stop_seconds)
    key = _prepare_database(settings, migrate_first=not args.no_migrate, with_key=args.ensure_key)
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base_url = f"http://{host}:{args.port}/v1"
    if args.ensure_key:
        _print_snippets(base_url, key, key_path(settings))
    record = ChildRecord(settings)
    supervisors = _supervisors(settings, record, worker=not args.no_worker, infer=not args.no_infer)
    for supervisor in supervisors:
        supervisor.start()
    announce(settings, base_url)
    try:
        _serve_api(args.host, args.port, access_log=settings.access_log)
    finally:
        withdraw(settings)
        for supervisor in supervisors:
            supervisor.stop()
        record.clear()
    return 0


def _prepare_database(settings: Settings, *, migrate_first: bool, with_key: bool) -> str | None:
    """Migrate (unless told not to) and ensure a key when asked; CliError when it fails."""
    from store import migrate  # alembic: only the commands that migrate load it

    try:
        if migrate_first:
            migrate.upgrade(settings)
        return ensure_key(settings) if with_key else None
    except SQLAlchemyError as exc:
        raise CliError(f"cannot prepare the database: {exc}") from exc


def _print_snippets(base_url: str, key: str | None, key_file: Path) -> None:
    """The snippets, which read the saved key; when keys existed already but none is saved,
    how to make and save one."""
    if key is None:
        print(
            f"API keys exist already; create one with `quaff keys create --project "
            f"{DEFAULT_PROJECT}` (keys are shown once) and save it in {key_file} for the "
            "snippets below."
        )
    print(snippets(base_url, key_file), flush=True)


def _supervisors(
    settings: Settings, record: ChildRecord, *, worker: bool, infer: bool
) -> list[WorkerSupervisor]:
    """A supervisor for the training worker (niced) and one for the inference node, as asked
    (each process recorded as it starts); no worker means no inference node either."""
    supervisors: list[WorkerSupervisor] = []
    if worker:
        supervisors.append(
            WorkerSupervisor(
                stop_seconds=settings.worker_stop_seconds,
                start=lambda: record.add(start_worker("worker", settings.worker_nice)),
            )
        )
    if worker and infer:
        supervisors.append(
            WorkerSupervisor(
                stop_seconds=settings.worker_stop_seconds,
                start=lambda: record.add(start_worker("infer")),
            )
        )
    return supervisors


def _serve_api(host: str, port: int, *, access_log: bool) -> None:
    """Serve the API until SIGTERM or SIGINT. uvicorn handles them itself, then re-raises the
    signal: ours turns that into an exception, so the caller's cleanup always runs (a bare
    SIGTERM would skip `finally`)."""
    import uvicorn  # the server loads only when `quaff serve` runs

    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=host,
            port=port,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            access_log=access_log,
        )
    except _Stop as stop:
        logger.info("received %s; stopping", stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
