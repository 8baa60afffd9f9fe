"""The whole job: `quaff train` with default options vs plain HF Trainer + PEFT LoRA (bf16).

    .venv/bin/python -m bench.job --json bench/results/job.json

Both start from the same JSONL file (the bench task: short answers, and its step-by-step variant
with ~150-token answers, `bench/task.py --worked`), the same hyperparameters (quaff's defaults:
LoRA r=16, alpha 32, all linear layers, lr 2e-4 cosine, clipping 1.0, seed 42) and the same number
of steps of the same batch size, one epoch. Each is timed as a fresh process from start to the
saved adapter: model load, tokenisation, Quaff's calibration and compile warm-up included.
`quaff train` runs twice per dataset: first with an empty inductor cache (a new worker), then with
the cache the first run left (the next job on that worker). Runs are interleaved
(quaff, HF, quaff) so load drift hits both alike. Tokens/s counts the tokens of the examples
trained on, as `quaff train` reports them (the baseline reports its own count, the same).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import command_line, environment, write_json
from bench.task import write_splits

VARIANTS = {"short": False, "long": True}  # name -> worked (step-by-step) answers
TRAINED = re.compile(r"Trained (\d+) steps on (\d+) tokens")
WARMUP = re.compile(r"Compiled the quantize passes in ([\d.]+) s")


def make_data(out: Path, variant: str, examples: int, seed: int) -> Path:
    """The training file of one variant: `examples` chat examples of the bench task."""
    return write_splits(out / variant, {"train": examples}, seed=seed, worked=VARIANTS[variant])[
        "train"
    ]


def quaff_command(model: str, data: Path, out: Path, steps: int, batch: int) -> list[str]:
    """`quaff train` with default options (only the data, steps and batch size given)."""
    return [
        sys.executable, "-m", "cli.main", "train", "--model", model, "--data", str(data),
        "--output", str(out), "--epochs", "1", "--max-steps", str(steps),
        "--batch-size", str(batch),
    ]  # fmt: skip


def hf_command(model: str, data: Path, out: Path, steps: int, batch: int) -> list[str]:
    """The HF Trainer baseline (bench/job_hf.py)."""
    return [
        sys.executable, "-m", "bench.job_hf", "--model", model, "--data", str(data),
        "--output", str(out), "--steps", str(steps), "--batch-size", str(batch),
    ]  # fmt: skip


def phases(lines: list[tuple[float, str]], steps: int, end: float) -> dict[str, float | None]:
    """Seconds of each phase of a `quaff train` run from its timestamped output lines (seconds
    since the start): start-up (imports, model load, tokenisation), calibration, the compile
    warm-up it reports, training (from the quantized model to the last step, warm-up included)
    and the finish (the last checkpoint, the outlier-stability probe and the adapter)."""

    def first(prefix: str) -> float | None:
        return next((t for t, line in lines if line.startswith(prefix)), None)

    calibrating, quantized = first("Calibrating outlier channels"), first("Quantized ")
    last_step = first(f"Step {steps}/{steps}")
    warmup = next((float(m.group(1)) for _, line in lines if (m := WARMUP.search(line))), None)
    ready = quantized if quantized is not None else calibrating

    def span(a: float | None, b: float | None) -> float | None:
        return round(b - a, 2) if a is not None and b is not None else None

    return {
        "startup_s": round(calibrating, 2) if calibrating is not None else None,
        "calibration_s": span(calibrating, quantized),
        "warmup_s": warmup,
        "training_s": span(ready, last_step),
        "finish_s": span(last_step, end),
    }


def run_quaff(cmd: list[str], cache: Path) -> dict[str, Any]:
    """Run `quaff train` with this inductor cache; its wall time, steps, tokens and phases."""
    env = {**_env(), "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    start = time.monotonic()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.strip()))
    wall = time.monotonic() - start
    output = "\n".join(line for _, line in lines)
    if proc.returncode != 0:
        raise RuntimeError(f"quaff train failed ({proc.returncode}):\n{output[-3000:]}")
    trained = TRAINED.search(output)
    if trained is None:
        raise RuntimeError(f"quaff train printed no summary:\n{output[-2000:]}")
    steps = int(trained.group(1))
    return {
        "wall_s": round(wall, 2),
        "steps": steps,
        "trained_tokens": int(trained.group(2)),
        **phases(lines, steps, wall),
    }


def run_hf(cmd: list[str]) -> dict[str, Any]:
    """Run the HF baseline; its wall time and the summary it prints."""
    start = time.monotonic()
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"HF baseline failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**summary, "wall_s": round(wall, 2), "in_process_s": summary["wall_s"]}


def _env() -> dict[str, str]:
    """The environment of a timed run: this one, with progress bars off."""
    return {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}


def summarise(variant: str, tokens: int, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One variant's row set: tokens/s and speed-ups of each Quaff run over the HF baseline."""
    hf = runs["hf"]["wall_s"]
    rows = {}
    for name, run in runs.items():
        rows[name] = {
            **run,
            "tokens_per_s": round(tokens / run["wall_s"], 1),
            "speedup_vs_hf": round(hf / run["wall_s"], 3),
        }
    return {"variant": variant, "tokens": tokens, "runs": rows}


def print_table(results: list[dict[str, Any]]) -> None:
    """The side-by-side table."""
    cols = ("startup_s", "calibration_s", "warmup_s", "training_s", "finish_s")
    print("\n| data | run | wall s | tokens/s | vs HF Trainer bf16 | " + " | ".join(cols) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(cols))
    for result in results:
        for name, run in result["runs"].items():
            parts = " | ".join("" if run.get(c) is None else f"{run[c]:.1f}" for c in cols)
            print(
                f"| {result['variant']} | {name} | {run['wall_s']:.1f} | {run['tokens_per_s']:.0f} "
                f"| {run['speedup_vs_hf']:.2f}x | {parts} |"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="SmolLM2-135M-Instruct")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="of the generated data")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Per variant: quaff (cold cache), HF, quaff (warm cache); print and write the table."""
    args = parse_args(argv)
    examples = args.steps * args.batch_size
    results = []
    with tempfile.TemporaryDirectory(prefix="quaff-job-bench-") as tmp:
        root = Path(tmp)
        for variant in args.variants.split(","):
            data = make_data(root / "data", variant, examples, args.seed)
            cache = root / f"inductor-{variant}"
            runs: dict[str, dict[str, Any]] = {}
            for name in ("quaff-cold-cache", "hf", "quaff-warm-cache"):
                out = root / "out" / f"{variant}-{name}"
                if name == "hf":
                    runs[name] = run_hf(
                        hf_command(args.model, data, out, args.steps, args.batch_size)
                    )
                else:
                    cmd = quaff_command(args.model, data, out, args.steps, args.batch_size)
                    runs[name] = run_quaff(cmd, cache)
                print(f"{variant} {name}: {runs[name]}", flush=True)
            # the tokens `quaff train` counted (the HF baseline counts the same tokenisation)
            results.append(summarise(variant, runs["quaff-cold-cache"]["trained_tokens"], runs))
    print_table(results)
    if args.json:
        write_json(
            args.json,
            {
                "command": command_line("bench.job", argv),
                "environment": environment(0),
                "model": args.model,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "results": results,
            },
        )
    return results


if __name__ == "__main__":
    main()
