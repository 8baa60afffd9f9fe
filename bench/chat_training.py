"""Chat latency while a fine-tuning job trains on the same host, with and without the turnstile.

    .venv/bin/python -m bench.chat_training --json bench/results/chat_training.json

Per mode (`yield`: QUAFF_INFER_YIELD_TO_TRAINING=true, training and inference take turns on the
device through `store/device_lock.py`; `free`: false, both processes share the cores freely) a
fresh service (API + one worker + one inference node, embedded SQLite, fresh data directory):
1. idle chat: N sequential streamed chats to the base (a ~50-token prompt, temperature 0,
   T new tokens) after one warm-up; wall latency and time to first token of each;
2. a long fine-tuning job on the same base; once it reports step >= 2, its steps/s over a
   window with no chat;
3. the same N chats while it trains, and its steps/s over that chat window;
4. the job is cancelled and the service stopped.
Reported: p50/p90 latency and TTFT idle and during training, p50(during)/p50(idle) (target
<= 2.0), steps/s without and with chat, and the training slowdown 1 - with/without.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
from openai import OpenAI

from bench.common import command_line, environment, write_json
from bench.job import make_data
from bench.load_service import make_keys, settings_for, spawn, stop, wait_for
from quaff_core.options.base_models import SMOLLM2
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
MODES = {"yield": "true", "free": "false"}  # mode -> QUAFF_INFER_YIELD_TO_TRAINING
TARGET_RATIO = 2.0
PROMPT = (
    "You are a patient teacher. In plain words, explain to a curious twelve-year-old why the sky "
    "looks blue during the day but turns red and orange at sunset, and what the air, the light "
    "of the sun and the angle of its rays have to do with it. Keep the answer short and friendly."
)  # about 50 tokens with the chat template

Sample = dict[str, float]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of `values`, interpolated linearly between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(samples: Sequence[Sample]) -> dict[str, float]:
    """p50/p90 of the samples' wall latency and time to first token, in seconds."""
    out = {}
    for key in ("latency_s", "ttft_s"):
        values = [s[key] for s in samples]
        for q in (50, 90):
            out[f"{key.removesuffix('_s')}_p{q}_s"] = round(percentile(values, q), 4)
    return out


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def slowdown(without_chat: float | None, with_chat: float | None) -> float | None:
    """The share of training speed lost to chat: 1 - with/without (None without a base rate)."""
    kept = ratio(with_chat, without_chat)
    return None if kept is None else round(1 - kept, 3)


def steps_per_s(start: tuple[float, int], end: tuple[float, int]) -> float | None:
    """Steps per second between two (time, step) readings (None over no time)."""
    seconds = end[0] - start[0]
    return round((end[1] - start[1]) / seconds, 4) if seconds > 0 else None


def summarise(mode: str, idle: Sequence[Sample], during: Sequence[Sample],
              rate_alone: float | None, rate_chat: float | None) -> dict[str, Any]:  # fmt: skip
    """One mode's row: latency percentiles idle and during training, their ratio, the rates."""
    a, b = latency_summary(idle), latency_summary(during)
    return {
        "mode": mode,
        "idle": a,
        "training": b,
        "latency_ratio_p50": ratio(b["latency_p50_s"], a["latency_p50_s"]),
        "ttft_ratio_p50": ratio(b["ttft_p50_s"], a["ttft_p50_s"]),
        "steps_per_s_alone": rate_alone,
        "steps_per_s_chat": rate_chat,
        "training_slowdown": slowdown(rate_alone, rate_chat),
    }


def one_chat(sdk: OpenAI, model: str, max_tokens: int) -> Sample:
    """One streamed chat: wall latency, time to the first content and the tokens generated."""
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    stream = sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=max_tokens,
        temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter()
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    return {"latency_s": round(end - start, 4),
            "ttft_s": round((first if first is not None else end) - start, 4),
            "tokens": tokens}  # fmt: skip


def chat_series(sdk: OpenAI, model: str, n: int, max_tokens: int) -> list[Sample]:
    """`n` sequential chats."""
    return [one_chat(sdk, model, max_tokens) for _ in range(n)]


def warm_up(sdk: OpenAI, model: str, max_tokens: int, timeout: float) -> None:
    """One chat that succeeds (the node registers and loads the base meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            one_chat(sdk, model, max_tokens)
            return
        except (openai.APIConnectionError, openai.APIStatusError) as error:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no chat answer within {timeout} s: {error}") from error
            time.sleep(1)


def service_env(data_dir: Path, yield_to_training: str) -> dict[str, str]:
    """This environment without QUAFF_*, plus the service's data dir, CPU and turnstile mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAFF_")}
    env.update(QUAFF_DATA_DIR=str(data_dir), QUAFF_DEVICE="cpu", PYTHONPATH=str(ROOT),
               QUAFF_INFER_YIELD_TO_TRAINING=yield_to_training, TQDM_DISABLE="1",
               QUAFF_INFER_HEARTBEAT_SECONDS="0.5", HF_HUB_OFFLINE="1")  # fmt: skip
    return env


@contextlib.contextmanager
def running_service(tmp: Path, yield_to_training: str) -> Iterator[tuple[str, str]]:
    """API + worker + inference node on a fresh data dir; yields (base URL, key), then stops."""
    tmp.mkdir(parents=True, exist_ok=True)
    settings = settings_for("sqlite", tmp / "data")
    key = make_keys(settings, 1)[0]
    env = service_env(settings.data_dir, yield_to_training)
    port = free_port()
    processes = [spawn(["api", "--port", str(port), "--no-migrate"], env, tmp / "api.log")]
    try:
        processes.append(spawn(["worker"], env, tmp / "worker.log"))
        processes.append(spawn(["infer"], env, tmp / "infer.log"))
        base_url = f"http://127.0.0.1:{port}/v1"
        wait_for("the API", lambda: httpx.get(f"{base_url}/models",
                 headers={"Authorization": f"Bearer {key}"}).status_code == 200, 60)  # fmt: skip
        yield base_url, key
    finally:
        for process in reversed(processes):
            stop(process)


def start_job(http: httpx.Client, model: str, data: Path, batch: int) -> str:
    """Upload `data` and create a long job (50 epochs) on `model`; returns its id."""
    with data.open("rb") as fh:
        file_id = http.post(
            "/files", files={"file": (data.name, fh)}, data={"purpose": "fine-tune"}
        ).json()["id"]
    body = {"model": model, "training_file": file_id,
            "hyperparameters": {"n_epochs": 50, "batch_size": batch},
            "training": {"n_checkpoints": 1}}  # fmt: skip
    job = http.post("/fine_tuning/jobs", json=body).json()
    if "id" not in job:
        raise RuntimeError(f"job creation failed: {job}")
    return str(job["id"])


def reading(http: httpx.Client, job_id: str) -> tuple[float, int]:
    """(now, the job's step); RuntimeError once the job has ended."""
    job = http.get(f"/fine_tuning/jobs/{job_id}").json()
    if job["status"] in ("failed", "cancelled", "succeeded"):
        raise RuntimeError(f"the training job ended {job['status']}: {job.get('error')}")
    return time.monotonic(), int((job.get("progress") or {}).get("step") or 0)


def timed_rate(http: httpx.Client, job: str, run: Callable[[], Any]) -> tuple[Any, float | None]:
    """`run()`'s value and the job's steps/s while it ran."""
    start = reading(http, job)
    value = run()
    return value, steps_per_s(start, reading(http, job))


def run_mode(mode: str, args: argparse.Namespace, data: Path, tmp: Path) -> dict[str, Any]:
    """One mode on a fresh service: idle chats, the job alone, chats while it trains."""
    with running_service(tmp, MODES[mode]) as (base_url, key):
        sdk = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=args.timeout)
        warm_up(sdk, args.model, args.max_tokens, args.timeout)
        chats = partial(chat_series, sdk, args.model, args.requests, args.max_tokens)
        idle = chats()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=60) as http:
            job_id = start_job(http, args.model, data, args.batch)
            try:
                wait_for("step 2", lambda: reading(http, job_id)[1] >= 2, args.timeout)
                _, alone = timed_rate(http, job_id, lambda: time.sleep(args.window))
                during, with_chat = timed_rate(http, job_id, chats)
            finally:
                http.post(f"/fine_tuning/jobs/{job_id}/cancel")
    row = summarise(mode, idle, during, alone, with_chat)
    print(f"{mode}: {row}", flush=True)
    return {**row, "samples": {"idle": idle, "training": during}}


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(result: dict[str, Any]) -> None:
    """The per-mode table, headed by the host's CPU class."""
    print(f"\nhost: {result['environment']['device']}; model {result['model']}, "
          f"{result['requests']} chats of {result['max_tokens']} tokens")  # fmt: skip
    print("| mode | idle p50/p90 s | idle TTFT p50/p90 s | training p50/p90 s | "
          "training TTFT p50/p90 s | p50 ratio (<= 2.0) | steps/s alone | steps/s chat | "
          "slowdown |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in result["modes"]:
        a, b = r["idle"], r["training"]
        print(f"| {r['mode']} | {a['latency_p50_s']:.2f}/{a['latency_p90_s']:.2f} | "
              f"{a['ttft_p50_s']:.2f}/{a['ttft_p90_s']:.2f} | "
              f"{b['latency_p50_s']:.2f}/{b['latency_p90_s']:.2f} | "
              f"{b['ttft_p50_s']:.2f}/{b['ttft_p90_s']:.2f} | "
              f"{_cell(r['latency_ratio_p50'], '.2f')} | "
              f"{_cell(r['steps_per_s_alone'], '.3f')} | {_cell(r['steps_per_s_chat'], '.3f')} | "
              f"{_cell(r['training_slowdown'], '.1%')} |")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default=SMOLLM2)
    p.add_argument("--requests", type=int, default=8, help="chats per series")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    p.add_argument("--window", type=float, default=20.0, help="seconds of training without chat")
    p.add_argument("--batch", type=int, default=4, help="training batch size")
    p.add_argument("--examples", type=int, default=200, help="training examples (x50 epochs)")
    p.add_argument("--timeout", type=float, default=900.0, help="for start-up and each chat")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        p.error(f"unknown modes {sorted(unknown)}; choose from {', '.join(MODES)}")
    if args.requests < 1:
        p.error("--requests must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Each mode on its own fresh service; print the table and write the JSON."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quaff-bench-chat-training-") as tmp_dir:
        tmp = Path(tmp_dir)
        data = make_data(tmp / "train", "short", args.examples, seed=0)
        modes = [run_mode(mode, args, data, tmp / mode) for mode in args.modes.split(",")]
    result = {
        "command": command_line("bench.chat_training", argv),
        "environment": environment(os.cpu_count() or 1),
        "model": args.model,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "window_s": args.window,
        "batch": args.batch,
        "target_latency_ratio_p50": TARGET_RATIO,
        "modes": modes,
    }
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
