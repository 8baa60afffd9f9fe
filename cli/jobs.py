"""`quaff jobs ...`: a client for scripts, over HTTP only (works against a remote server too)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from cli.common import clock
from cli.evaluations import register_eval
from cli.http import checked, client, extract_tarball, upload
from cli.job_watch import EventPrinter, metrics_text, stamp
from cli.local import DEFAULT_BASE_URL

TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("validating_files", "queued", "running", "paused", *TERMINAL)
PAGE_SIZE = 100


def register(subparsers: Any) -> None:
    """Add the `jobs` command group."""
    parser = subparsers.add_parser("jobs", help="create, watch and download fine-tuning jobs")
    parser.add_argument(
        "--base-url",
        default=None,
        help="server API root (default: $QUAFF_BASE_URL, $OPENAI_BASE_URL, the local "
        f"`quaff serve`, or {DEFAULT_BASE_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="default: $QUAFF_API_KEY, $OPENAI_API_KEY, or the local `quaff serve` key file",
    )
    sub = parser.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="upload a training file and submit a job")
    create.add_argument("--model", required=True, help="base model id, e.g. tiny-llama")
    create.add_argument("--file", required=True, type=Path, help="training JSONL file")
    create.add_argument("--validation-file", type=Path, help="validation JSONL file")
    create.add_argument("--epochs", type=int, help="hyperparameters.n_epochs")
    create.add_argument("--batch-size", type=int, help="hyperparameters.batch_size")
    create.add_argument("--learning-rate-multiplier", type=float)
    create.add_argument("--suffix", help="fine-tuned model name suffix")
    create.add_argument("--seed", type=int)
    create.add_argument("--lora", type=json.loads, help="JSON, e.g. '{\"r\": 8}'")
    create.add_argument("--quantization", type=json.loads, help='JSON, e.g. \'{"method": "none"}\'')
    create.add_argument(
        "--training", type=json.loads, help="JSON, e.g. '{\"max_seq_length\": 512}'"
    )
    create.add_argument("--watch", action="store_true", help="then watch it until it ends")
    create.set_defaults(handler=create_job)
    listing = sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    listing.add_argument("--after", help="start after this job id (the last one of a page)")
    listing.add_argument("--status", choices=STATUSES, help="only jobs with this status")
    listing.set_defaults(handler=list_jobs)
    events = sub.add_parser("events", help="print a job's events, oldest first")
    events.add_argument("job_id")
    events.add_argument("--limit", type=int, default=50, help="the newest N events (default 50)")
    events.set_defaults(handler=list_events)
    watch = sub.add_parser(
        "watch", help="follow a job's events: progress, loss, validation loss, tokens/s, ETA"
    )
    watch.add_argument("job_id")
    watch.set_defaults(handler=watch_job)
    download = sub.add_parser("download", help="download and unpack a job's adapter")
    download.add_argument("job_id")
    download.add_argument("-o", "--output", required=True, type=Path, help="target directory")
    download.add_argument("--step", type=int, help="a checkpoint's step instead of the final")
    download.set_defaults(handler=download_adapter)
    register_eval(sub)
    for action in ("get", "cancel", "pause", "resume"):
        one = sub.add_parser(action, help=f"{action} a job (prints the job as JSON)")
        one.add_argument("job_id")
        one.set_defaults(handler=job_action, action=action)


def create_job(args: argparse.Namespace) -> int:
    """Upload the file(s), create the job, print its id (and watch it with --watch)."""
    with client(args) as http:
        payload: dict[str, Any] = {"model": args.model, "training_file": upload(http, args.file)}
        if args.validation_file:
            payload["validation_file"] = upload(http, args.validation_file)
        hyper = {
            "n_epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate_multiplier": args.learning_rate_multiplier,
        }
        if any(v is not None for v in hyper.values()):
            payload["hyperparameters"] = {k: v for k, v in hyper.items() if v is not None}
        for key in ("suffix", "seed", "lora", "quantization", "training"):
            if getattr(args, key) is not None:
                payload[key] = getattr(args, key)
        job = checked(http.post("/fine_tuning/jobs", json=payload))
    print(job["id"])
    if args.watch:
        args.job_id = job["id"]
        return watch_job(args)
    return 0


def watch_job(args: argparse.Namespace) -> int:
    """Stream events until the job ends or pauses; exit 0 succeeded, 2 paused, 1 otherwise."""
    with client(args, timeout=None) as http:
        checked(http.get(f"/fine_tuning/jobs/{args.job_id}"))
        with http.stream(
            "GET", f"/fine_tuning/jobs/{args.job_id}/events", params={"stream": "true"}
        ) as stream:
            if not stream.is_success:
                stream.read()
                checked(stream)
            show = EventPrinter(sys.stdout)
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line.removeprefix("data:").strip())
                show(event)
                if _became_paused(event):
                    job = checked(http.get(f"/fine_tuning/jobs/{args.job_id}"))
                    if job["status"] == "paused":
                        break
            show.close()
        job = checked(http.get(f"/fine_tuning/jobs/{args.job_id}"))
    print(f"job {job['id']} {job['status']}" + _ending(job))
    return {"succeeded": 0, "paused": 2}.get(job["status"], 1)


def _became_paused(event: dict[str, Any]) -> bool:
    """Whether an event records a stop that leaves the job paused (by kind, not by wording)."""
    data = event.get("data") or {}
    if event.get("kind") == "status":
        return data.get("status") == "paused"
    return event.get("kind") == "training_stopped" and data.get("reason") == "paused"


def job_row(job: dict[str, Any], now: float) -> list[str]:
    """ID, STATUS, MODEL, METHOD, PROGRESS, ETA, CREATED of one job."""
    progress = job.get("progress") or {}
    step, total = progress.get("step") or 0, progress.get("total_steps")
    finish = job.get("estimated_finish")
    eta = clock(finish - now) if finish and job["status"] in ("queued", "running") else "-"
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job["created_at"]))
    method = (job.get("method") or {}).get("type", "supervised")
    return [job["id"], job["status"], job["model"], method, f"{step}/{total or '?'}", eta, created]


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def list_jobs(args: argparse.Namespace) -> int:
    """Print the jobs (newest first), with --status reading on until --limit of them match."""
    found: list[dict[str, Any]] = []
    after, more = args.after, True
    with client(args) as http:
        while more and len(found) < args.limit:
            params = {
                "limit": PAGE_SIZE if args.status else min(args.limit - len(found), PAGE_SIZE),
                **({"after": after} if after else {}),
            }
            page = checked(http.get("/fine_tuning/jobs", params=params))
            found += [j for j in page["data"] if args.status in (None, j["status"])]
            more = page["has_more"] and bool(page["data"])
            after = page["data"][-1]["id"] if page["data"] else after
    found = found[: args.limit]
    header = ["ID", "STATUS", "MODEL", "METHOD", "PROGRESS", "ETA", "CREATED"]
    print(table(header, [job_row(j, time.time()) for j in found]) if found else "no jobs")
    if more and found:
        print(f"(more: --after {found[-1]['id']})", file=sys.stderr)
    return 0


def event_line(event: dict[str, Any]) -> str:
    """`2026-01-02 10:00:00 info  message`, a metrics event with its numbers."""
    data = event.get("data")
    text = event.get("message", "")
    if event.get("type") == "metrics" and isinstance(data, dict):
        text = metrics_text(data, data.get("valid_loss"), None).removesuffix(" eta ?")
    return f"{stamp(event)} {event.get('level', 'info'):<5} {text}"


def list_events(args: argparse.Namespace) -> int:
    """Print the newest --limit events of a job, oldest first."""
    with client(args) as http:
        page = checked(
            http.get(f"/fine_tuning/jobs/{args.job_id}/events", params={"limit": args.limit})
        )
    for event in reversed(page["data"]):
        print(event_line(event))
    if page["has_more"]:
        print(f"(older events: --limit {args.limit * 2})", file=sys.stderr)
    return 0


def _ending(job: dict[str, Any]) -> str:
    """`: model ...` or `: error ...` for the final line of `watch`."""
    if job.get("fine_tuned_model"):
        return f": {job['fine_tuned_model']}"
    if job.get("error"):
        return f": {job['error'].get('code')}: {job['error'].get('message')}"
    return ""


def download_adapter(args: argparse.Namespace) -> int:
    """Download the adapter archive and unpack it into the output directory."""
    params = {"step": args.step} if args.step is not None else {}
    with client(args, timeout=None) as http:
        response = http.get(f"/fine_tuning/jobs/{args.job_id}/adapter", params=params)
        if not response.is_success:
            checked(response)
    names = extract_tarball(response.content, args.output)
    print(f"{len(names)} files in {args.output}")
    return 0


def job_action(args: argparse.Namespace) -> int:
    """GET a job, or POST cancel/pause/resume; print the job."""
    path = f"/fine_tuning/jobs/{args.job_id}"
    with client(args) as http:
        response = http.get(path) if args.action == "get" else http.post(f"{path}/{args.action}")
        print(json.dumps(checked(response), indent=2))
    return 0
