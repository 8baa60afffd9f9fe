"""Dashboard load time: a running job with 1,000 events, opened in headless chromium; bundle size.

    .venv/bin/python -m bench.ui_load [--events 1000] [--runs 5] [--json bench/out/ui_load.json]

Seeds a job (status running, so its event stream stays open as for a live job) with `--events`
events, mostly metrics, serves it with `quaff api`, and opens the job page in a fresh browser
context per run (cold cache). Times come from the page's own clock (performance.now(), from
navigation start): DOMContentLoaded, and when the loss chart and the events log show every event.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import sync_playwright

from api.routes.ui import UI_DIST
from bench.common import cpu_name
from store import events, jobs, migrate
from store.auth import create_key
from store.blobs import BlobStore
from store.db import session_scope
from store.files import new_upload, register_upload
from store.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# Records (from navigation start) when the loss chart names the last step and when the events log
# lists every message event; set up before the page loads.
PROBE = """
window.__quaff = {};
new MutationObserver(() => {
  const q = window.__quaff, want = window.__quaffWant;
  const s = document.querySelector(".chart-summary");
  if (!q.curve && s && s.textContent.startsWith(`Step ${want.step} of`)) {
    q.curve = performance.now();
  }
  if (!q.log && document.querySelectorAll(".event-list li").length >= want.messages) {
    q.log = performance.now();
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@dataclass(frozen=True)
class Seeded:
    """The key, the running job, its last metrics step and how many message events it has."""

    key: str
    job_id: str
    last_step: int
    messages: int


def seed_running_job(settings: Settings, n_events: int) -> Seeded:
    """A running job with exactly `n_events` events: one in 20 a message, the rest metrics."""
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    blobs = BlobStore(settings.blob_dir)
    with session_scope(settings) as session:
        key_row, key = create_key(session, "bench-ui")
        file_id, blob_key = new_upload()
        blob = blobs.write_bytes(blob_key, (json.dumps(row) + "\n").encode() * 10)
        upload = register_upload(
            session, blobs, key_row.project_id, file_id=file_id, blob=blob,
            filename="t.jsonl", purpose="fine-tune",
        )  # fmt: skip
        body = {"model": "tiny-llama", "training_file": upload.id}
        job = jobs.create_job(session, settings, key_row.project_id, body)
        jobs.claim_job(session, job.id, "bench:1")
        existing = len(events.events_since(session, job.id))
        step, total = 0, n_events * 2
        for i in range(existing, n_events):
            if i % 20 == 0:
                events.add_event(session, job.id, f"Checkpoint saved at step {step}")
                continue
            step += 1
            metrics = {
                "step": step, "total_steps": total, "train_loss": 3.0 / (1 + step / 100),
                "train_mean_token_accuracy": min(0.9, step / total + 0.2),
                "valid_loss": 3.1 / (1 + step / 100) if step % 50 == 0 else None,
                "valid_mean_token_accuracy": None, "learning_rate": 2e-4,
                "tokens_per_second": 900.0,
            }  # fmt: skip
            events.add_event(session, job.id, f"Step {step}/{total}", type="metrics", data=metrics)
        jobs.record_progress(session, job, step=step, total_steps=total)
        session.commit()
        messages = sum(e.type != "metrics" for e in events.events_since(session, job.id))
        return Seeded(key=key, job_id=job.id, last_step=step, messages=min(messages, 200))


def stream_ms(origin: str, seeded: Seeded, n_events: int) -> float:
    """How long the API takes to stream every event of the job (what the page waits for)."""
    headers = {"Authorization": f"Bearer {seeded.key}"}
    url = f"{origin}/v1/fine_tuning/jobs/{seeded.job_id}/events"
    start, seen = time.perf_counter(), 0
    with httpx.stream("GET", url, params={"stream": "true"}, headers=headers, timeout=60) as reply:
        for line in reply.iter_lines():
            seen += line.startswith("data:")
            if seen == n_events:
                break
    return (time.perf_counter() - start) * 1000


def bundle_sizes() -> dict[str, dict[str, int]]:
    """Raw and gzip (level 9) bytes of each file the browser loads."""
    return {
        str(p.relative_to(UI_DIST)): {
            "bytes": p.stat().st_size,
            "gzip": len(gzip.compress(p.read_bytes(), 9)),
        }
        for p in sorted(UI_DIST.rglob("*"))
        if p.is_file()
    }


def measure(origin: str, seeded: Seeded, runs: int) -> list[dict[str, float]]:
    """Open the job page `runs` times, each in a fresh context (cold cache); the page's timings."""
    want = json.dumps({"step": seeded.last_step, "messages": seeded.messages})
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            key = json.dumps(seeded.key)
            context.add_init_script(f"sessionStorage.setItem('quaff.apiKey', {key});")
            context.add_init_script(f"window.__quaffWant = {want};" + PROBE)
            page = context.new_page()
            page.goto(f"{origin}/ui/jobs/{seeded.job_id}")
            page.wait_for_function(
                "() => window.__quaff.curve && window.__quaff.log", timeout=60_000
            )
            results.append(page.evaluate(TIMINGS))
            context.close()
        browser.close()
    return results


TIMINGS = """() => ({
  dom_content_loaded_ms: performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd,
  curve_complete_ms: window.__quaff.curve,
  events_log_complete_ms: window.__quaff.log,
})"""


def main(argv: list[str] | None = None) -> int:
    """Seed, serve, measure, print (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp) / "data")
        migrate.upgrade(settings)
        seeded = seed_running_job(settings, args.events)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
        env |= {"QUAFF_DATA_DIR": str(settings.data_dir), "PYTHONPATH": str(ROOT)}
        argv_api = [
            sys.executable,
            "-m",
            "cli.main",
            "api",
            "--port",
            str(args.port),
            "--no-migrate",
        ]
        api = subprocess.Popen(argv_api, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)  # quiet
        origin = f"http://127.0.0.1:{args.port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{origin}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            runs = measure(origin, seeded, args.runs)
            api_stream = [stream_ms(origin, seeded, args.events) for _ in range(args.runs)]
        finally:
            api.terminate()
            api.wait(timeout=30)
    sizes = bundle_sizes()
    report: dict[str, Any] = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "events": args.events,
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
        "api_stream_all_events_ms": statistics.median(api_stream),
        "bundle": sizes,
        "bundle_total": {k: sum(s[k] for s in sizes.values()) for k in ("bytes", "gzip")},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
