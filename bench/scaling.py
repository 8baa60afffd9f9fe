"""Data-parallel scaling on this host: tokens/s of one job on 1 and N processes (torchrun ranks
as the worker launches them: gloo on CPU, NCCL on GPUs) at the same effective batch.

    .venv/bin/python -m bench.scaling --json bench/results/scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from bench.common import command_line, environment, write_json
from quaff_core.options.train_config import TrainConfig
from worker.group import launch_command
from worker.ranks import RankSpec
from worker.relay import RELAY_FILE


def _data(path: Path, n: int, seq_len: int) -> Path:
    """`n` prompt/completion examples, each longer than `seq_len` tokens (truncated to it)."""
    words = " ".join(f"word{i % 97}" for i in range(seq_len))
    rows = [{"prompt": f"Example {i}: repeat", "completion": words} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_one(args: argparse.Namespace, processes: int, work: Path) -> dict[str, Any]:
    """One job on `processes` ranks; tokens/s of rank 0's steps after the first."""
    share = 1 if torch.cuda.is_available() else processes  # CPU ranks split the cores
    config = TrainConfig(
        batch_size=args.effective_batch // processes,
        devices=processes,
        max_steps=args.steps,
        max_seq_length=args.seq_len,
        train_on_inputs=True,
        compile=False,
        seed=1,
    )
    relay = work / "relay"
    relay.mkdir(parents=True)
    spec = RankSpec(
        model=args.model,
        train_file=str(
            _data(work / "train.jsonl", args.effective_batch * args.steps, args.seq_len)
        ),
        validation_file=None,
        output_dir=str(work / "run"),
        config=config.to_dict(),
        outlier_map=None,
        resume_from=None,
        relay_dir=str(relay),
        parent_pid=os.getpid(),
        threads=max(1, args.threads // share),
    )
    command = launch_command(spec.write(work / "spec.json"), processes)
    with (work / "ranks.log").open("wb") as log:
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
    lines = [json.loads(line) for line in (relay / RELAY_FILE).read_text().splitlines()]
    rates = [r["tokens_per_second"] for r in lines if r["type"] == "progress"][1:]
    return {
        "processes": processes,
        "per_device_batch": config.batch_size,
        "effective_batch": config.effective_batch_size,
        "tokens_per_second": statistics.median(rates),
        "steps_measured": len(rates),
    }


def main(argv: list[str] | None = None) -> int:
    """Run 1 and N processes, print tokens/s and the ratio, write the JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--processes", type=int, default=2, help="ranks of the parallel run")
    parser.add_argument("--effective-batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps (first not timed)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = []
    for processes in (1, args.processes):
        with tempfile.TemporaryDirectory(prefix="quaff-scaling-") as tmp:
            rows.append(run_one(args, processes, Path(tmp)))
    ratio = rows[1]["tokens_per_second"] / rows[0]["tokens_per_second"]
    for row in rows:
        sys.stdout.write(
            f"{row['processes']} process(es) x batch {row['per_device_batch']}: "
            f"{row['tokens_per_second']:.0f} tokens/s\n"
        )
    sys.stdout.write(f"{args.processes} vs 1 process: {ratio:.2f}x tokens/s\n")
    if args.json:
        result = {
            "environment": environment(args.threads),
            "command": command_line("bench.scaling", argv),
            "model": args.model,
            "seq_len": args.seq_len,
            "rows": rows,
            "ratio": round(ratio, 3),
            "load_average": {"before": load_before, "after": os.getloadavg()},
        }
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
