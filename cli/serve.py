"""`quaff serve`: the REST API on 127.0.0.1:8000 plus one worker and one inference process."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from cli.common import SHUTDOWN_GRACE_SECONDS, CliError
from cli.local import KEY_FILE, announce, key_path, withdraw

if TYPE_CHECKING:
    from store.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_PROJECT = "default"
SDK_SNIPPET = """\
import json
from openai import OpenAI

client = OpenAI(base_url="{base_url}", api_key="{key}")
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
CURL_LINE = 'curl -s {base_url}/fine_tuning/jobs -H "Authorization: Bearer {key}"'
ASK_SNIPPET = """\
from openai import OpenAI

client = OpenAI(base_url="{base_url}", api_key="{key}")
job = client.fine_tuning.jobs.list(limit=1).data[0]  # once it has succeeded
reply = client.chat.completions.create(
    model=job.fine_tuned_model or "tiny-llama",
    messages=[{{"role": "user", "content": "What is 3 plus 3?"}}],
    max_tokens=16,
)
print(reply.choices[0].message.content)
"""
ASK_CURL = (
    'curl -s {base_url}/chat/completions -H "Authorization: Bearer {key}" '
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
        help=f"create an API key if none exists (kept in DATA_DIR/{KEY_FILE}) and print "
        "an openai SDK snippet and a curl line that use it",
    )
    parser.set_defaults(handler=run)


def ensure_key(settings: Settings) -> str | None:
    """The saved key; a new one (saved, mode 600) when no active key exists; None otherwise."""
    from store import auth
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


def snippets(base_url: str, key: str) -> str:
    """The dashboard's address, a Python snippet (official openai SDK) and a curl line."""
    return (
        f"Dashboard: {base_url.removesuffix('/v1')}/ui/ (sign in with the API key)\n\n"
        "Fine-tune with the openai SDK (pip install openai):\n\n"
        + SDK_SNIPPET.format(base_url=base_url, key=key)
        + "\nList jobs with curl:\n\n"
        + CURL_LINE.format(base_url=base_url, key=key)
        + "\n\nAsk your model with the openai SDK:\n\n"
        + ASK_SNIPPET.format(base_url=base_url, key=key)
        + "\nAsk it with curl:\n\n"
        + ASK_CURL.format(base_url=base_url, key=key)
        + "\n"
    )


def start_worker(command: str = "worker") -> subprocess.Popen[bytes]:
    """`quaff worker` (or `infer`) in its own process group, with this environment."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", command], start_new_session=True)


def stop_worker(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the worker, then SIGKILL what is left of its group; a cut job resumes elsewhere."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        logger.warning("worker %d did not stop in %.0fs; killing it", process.pid, timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run(args: argparse.Namespace) -> int:
    """Migrate, start the worker, serve the API until interrupted, then stop the worker."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from store import migrate
    from store.settings import get_settings

    settings = get_settings()
    try:
        if not args.no_migrate:
            migrate.upgrade(settings)
        key = ensure_key(settings) if args.ensure_key else None
    except SQLAlchemyError as exc:
        raise CliError(f"cannot prepare the database: {exc}") from exc
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base_url = f"http://{host}:{args.port}/v1"
    if args.ensure_key:
        if key is None:
            print(
                f"API keys exist already; create one for the snippet with `quaff keys create "
                f"--project {DEFAULT_PROJECT}` (keys are shown once)."
            )
            key = "YOUR_API_KEY"
        print(snippets(base_url, key), flush=True)
    worker = None if args.no_worker else start_worker()
    infer = None if args.no_worker or args.no_infer else start_worker("infer")
    announce(settings, base_url)
    try:
        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
    finally:
        withdraw(settings)
        for child in (worker, infer):
            if child is not None:
                stop_worker(child)
    return 0
