"""Time one LoRA training step (forward, backward, AdamW) of several modes side by side.

    .venv/bin/python -m bench.step --model smollm2 --model llama2048 --json bench/out/step.json

Modes run interleaved in one process (round-robin, rotated each round) so that CPU noise from
other users hits all of them alike; the median step time of each is reported with its speed-up
over fp32. Peak memory is measured per mode in a fresh subprocess (peak RSS sampled during steps,
minus the RSS of the process before the model is built). `--profile MODE` prints a profiler table.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from bench.step_models import build_base
from bench.step_modes import MODES

DEFAULT_MODES = ["fp32", "bf16-autocast", "quaff", "w8a8", "fp32-hf", "bf16-autocast-hf"]


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS every millisecond in a thread; `.peak` is the maximum seen."""

    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def token_batches(vocab: int, batch: int, seq_len: int, n: int, seed: int) -> list[torch.Tensor]:
    """`n` random id batches [batch, seq_len]."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (batch, seq_len), generator=g) for _ in range(n)]


def cuda_memory_probe(args: argparse.Namespace, model_name: str, mode: str) -> dict[str, float]:
    """CUDA: build one mode, run 3 steps; peak allocated GPU memory in MiB (net of the start)."""
    torch.cuda.empty_cache()
    start = torch.cuda.memory_allocated()
    base = build_base(model_name, args.layers).to(args.device)
    vocab = base.config.vocab_size
    runner = MODES[mode].build(
        base, token_batches(vocab, args.batch, args.seq_len, 2, 1), args.compile
    )
    del base
    ids = token_batches(vocab, args.batch, args.seq_len, 1, seed=2)[0]
    runner.step(ids)
    torch.cuda.reset_peak_memory_stats()
    runner.step(ids)
    runner.step(ids)
    mib = 1024.0**2
    peak = torch.cuda.max_memory_allocated()
    return {"peak_rss_mib": peak / mib, "net_peak_mib": (peak - start) / mib}


def memory_probe(args: argparse.Namespace, model_name: str, mode: str) -> dict[str, float]:
    """In this (fresh) process: build one mode, run 2 steps, return peak RSS numbers in MiB."""
    if args.device != "cpu":
        return cuda_memory_probe(args, model_name, mode)
    start = rss_bytes()
    base = build_base(model_name, args.layers)
    vocab = base.config.vocab_size
    calib = token_batches(vocab, args.batch, args.seq_len, 2, seed=1)
    runner = MODES[mode].build(base, calib, args.compile)
    del base
    gc.collect()
    ids = token_batches(vocab, args.batch, args.seq_len, 1, seed=2)[0]
    runner.step(ids)  # compile / first-touch allocations outside the measured window
    gc.collect()
    before = rss_bytes()
    with PeakRss() as peak:
        runner.step(ids)
        runner.step(ids)
    mib = 1024.0**2
    return {
        "peak_rss_mib": peak.peak / mib,
        "net_peak_mib": (peak.peak - start) / mib,
        "resident_before_step_mib": before / mib,
    }


def run_memory_probes(args: argparse.Namespace, model_name: str) -> dict[str, dict[str, float]]:
    """One subprocess per mode (large frees go back to the OS: MALLOC_MMAP_THRESHOLD_)."""
    results: dict[str, dict[str, float]] = {}
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    for mode in args.modes:
        cmd = [sys.executable, "-m", "bench.step", "--probe-memory", mode, "--model", model_name]
        cmd += ["--batch", str(args.batch), "--seq-len", str(args.seq_len)]
        cmd += ["--layers", str(args.layers), "--threads", str(args.threads)]
        cmd += ["--device", args.device]
        cmd += ["--no-compile"] if args.compile is False else []
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory probe for {mode} failed:\n{done.stderr[-3000:]}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def time_modes(args: argparse.Namespace, model_name: str) -> dict[str, Any]:
    """Build every mode from one base and time them interleaved; returns per-mode step times."""
    base = build_base(model_name, args.layers).to(args.device)
    vocab = base.config.vocab_size
    calib = token_batches(vocab, args.batch, args.seq_len, 2, seed=1)
    runners = {}
    for mode in args.modes:
        t0 = time.perf_counter()
        runners[mode] = MODES[mode].build(base, calib, args.compile)
        print(f"  built {mode} in {time.perf_counter() - t0:.1f}s", flush=True)
    del base
    gc.collect()
    batches = token_batches(vocab, args.batch, args.seq_len, args.warmup + args.steps, seed=2)
    times: dict[str, list[float]] = {m: [] for m in args.modes}
    losses: dict[str, float] = {}
    last: dict[str, float] = {}
    for i, ids in enumerate(batches):
        order = args.modes[i % len(args.modes) :] + args.modes[: i % len(args.modes)]
        for mode in order:
            t0 = time.perf_counter()
            losses[mode] = runners[mode].step(ids)  # float(loss) synchronises CUDA
            elapsed = time.perf_counter() - t0
            last[mode] = elapsed
            if i >= args.warmup:
                times[mode].append(elapsed)
        tag = "warm-up" if i < args.warmup else "step"
        row = "  ".join(f"{m}={last[m]:.2f}s (loss {losses[m]:.3f})" for m in order)
        print(f"  {tag} {i}: {row}", flush=True)
    if args.profile:
        profile(runners[args.profile], batches[0], args.profile)
    return {"times": times, "last_loss": losses}


def profile(runner: Any, ids: torch.Tensor, mode: str) -> None:
    """Print the top ops of one step of `mode` by self CPU time."""
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        runner.step(ids)
    print(f"\nprofile of one {mode} step (top 25 by self CPU time):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def report(model_name: str, timing: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    """Print the table for one model and return its JSON record."""
    med = {m: statistics.median(t) if t else float("nan") for m, t in timing["times"].items()}
    ref = med.get("fp32")
    ref_bf16 = med.get("bf16-autocast")
    print(f"\n== {model_name}: median step over {len(next(iter(timing['times'].values())))} steps")
    head = ["step s", "fp32/x", "bf16/x", "peak MiB", "net MiB", "net/fp32"]
    print(f"{'mode':16s} " + " ".join(f"{h:>9s}" for h in head))
    records = {}
    for mode, t in med.items():
        mem = memory.get(mode, {})
        net_ref = memory.get("fp32", {}).get("net_peak_mib")
        rec = {
            "median_step_s": t,
            "steps_s": timing["times"][mode],
            "speedup_vs_fp32": ref / t if ref else None,
            "speedup_vs_bf16_autocast": ref_bf16 / t if ref_bf16 else None,
            "last_loss": timing["last_loss"][mode],
            **mem,
            "net_peak_vs_fp32": (mem["net_peak_mib"] / net_ref) if mem and net_ref else None,
            "includes": MODES[mode].description,
        }
        records[mode] = rec

        def fmt(v: float | None, spec: str) -> str:
            return format(v, spec) if v is not None else "-"

        print(
            f"{mode:16s} {t:9.3f} {fmt(rec['speedup_vs_fp32'], '9.2f')} "
            f"{fmt(rec['speedup_vs_bf16_autocast'], '9.2f')} "
            f"{fmt(mem.get('peak_rss_mib'), '9.0f')} {fmt(mem.get('net_peak_mib'), '9.0f')} "
            f"{fmt(rec['net_peak_vs_fp32'], '9.2f')}"
        )
    return records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", action="append", help="smollm2 or llama<hidden> (repeatable)")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"of {sorted(MODES)}")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--layers", type=int, default=2, help="decoder layers of synthetic llamas")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--no-compile", dest="compile", action="store_const", const=False, default="auto"
    )
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--memory-only", action="store_true", help="peak memory rows, no timing")
    p.add_argument("--profile", choices=sorted(MODES), help="profile one step of this mode")
    p.add_argument("--json", type=Path, help="write all results to this JSON file")
    p.add_argument("--probe-memory", choices=sorted(MODES), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        p.error(f"unknown modes {unknown}; choose from {sorted(MODES)}")
    args.model = args.model or ["smollm2", "llama2048"]
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, internally, one memory probe)."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    if args.probe_memory:
        print(json.dumps(memory_probe(args, args.model[0], args.probe_memory)))
        return
    print(
        f"torch {torch.__version__}, {args.device}, {args.threads} threads, "
        f"batch {args.batch} x {args.seq_len}"
    )
    for mode in args.modes:
        print(f"  {mode:14s}: {MODES[mode].description}")
    results: dict[str, Any] = {"config": {k: str(v) for k, v in vars(args).items()}}
    for model_name in args.model:
        print(f"\n== {model_name}: building and timing {', '.join(args.modes)}", flush=True)
        timing = (
            {"times": {m: [] for m in args.modes}, "last_loss": dict.fromkeys(args.modes)}
            if args.memory_only
            else time_modes(args, model_name)
        )
        gc.collect()
        memory = run_memory_probes(args, model_name) if args.memory else {}
        results[model_name] = report(model_name, timing, memory)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
