"""Speed and memory: bench/step.py over every model and batch shape, plus a profile of Quaff.

    .venv/bin/python -m bench.speed --json bench/results/speed.json

For each shape (`--shape 4x256 --shape 1x1024`) one `bench.step` process times every mode
interleaved on every model (SmolLM2-135M-Instruct and a synthetic Llama of hidden size 2048) and
probes peak memory per mode in fresh processes. Then one step of each `--profile` mode is
profiled on the first model and shape, and its top operators are recorded: the largest remaining
costs of the Quaff step.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from bench.common import command_line, environment, write_json
from bench.step import token_batches
from bench.step_models import build_base
from bench.step_modes import LORA_R, MODES

ALL_MODES = "fp32,bf16-autocast,quaff,w8a8,fp32-hf,bf16-autocast-hf"
TOP_OPS = 15


# the int8 GEMM ops of the backends (`quaff_core.quant.capabilities.kernel_choice`)
INT8_GEMMS = ("aten::_int_mm", "onednn::qlinear_pointwise")


def parse_shape(text: str) -> tuple[int, int]:
    """'4x256' -> (4, 256)."""
    batch, sep, seq = text.lower().partition("x")
    if not sep or not batch.isdigit() or not seq.isdigit() or int(batch) < 1 or int(seq) < 2:
        raise argparse.ArgumentTypeError(f"shape must look like 4x256 (batch x seq), got {text!r}")
    return int(batch), int(seq)


def run_step_bench(args: argparse.Namespace, batch: int, seq: int, out: Path) -> dict[str, Any]:
    """One bench.step process for this shape; its output streams through; returns its JSON."""
    cmd = [sys.executable, "-m", "bench.step"]
    for model in args.model:
        cmd += ["--model", model]
    cmd += ["--modes", args.modes, "--batch", str(batch), "--seq-len", str(seq)]
    cmd += ["--layers", str(args.layers), "--steps", str(args.steps)]
    cmd += ["--warmup", str(args.warmup), "--threads", str(args.threads), "--json", str(out)]
    print(f"\n$ {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True)
    data: dict[str, Any] = json.loads(out.read_text())
    data["command"] = " ".join([".venv/bin/python", *cmd[1:]])
    return data


def matmul_component(name: str, shapes: list[list[int]], vocab: int, lora_r: int) -> str:
    """Which part of the model a matrix multiply of these input shapes belongs to."""
    if name in INT8_GEMMS:
        return "int8 base GEMMs"
    dims = {d for shape in shapes for d in shape}
    if vocab in dims:
        return "output head (logits and their gradient)"
    if lora_r in dims:
        return "LoRA A/B matmuls"
    if name == "aten::bmm" or any(len(shape) > 2 for shape in shapes):
        return "attention"
    matrices = [shape for shape in shapes if len(shape) == 2]
    if matrices and min(min(shape) for shape in matrices) <= 64:
        return "small matmuls (outlier-channel corrections)"
    return "other fp matmuls"


def top_ops(mode: str, model_name: str, batch: int, seq: int, layers: int) -> dict[str, Any]:
    """Profile one training step of `mode`; the top operators by self CPU time (with shares)."""
    base = build_base(model_name, layers)
    vocab = base.config.vocab_size
    runner = MODES[mode].build(base, token_batches(vocab, batch, seq, 2, seed=1), True)
    del base
    ids = token_batches(vocab, batch, seq, 1, seed=2)[0]
    runner.step(ids)
    runner.step(ids)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        runner.step(ids)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP_OPS]
    shaped = [
        e
        for e in prof.key_averages(group_by_input_shape=True)
        if e.key in ("aten::mm", "aten::addmm", "aten::bmm", *INT8_GEMMS)
    ]
    shaped.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    components: dict[str, float] = {}
    for e in shaped:
        part = matmul_component(e.key, [list(x) for x in e.input_shapes if x], vocab, LORA_R)
        components[part] = components.get(part, 0.0) + e.self_cpu_time_total / total
    return {
        "mode": mode,
        "model": model_name,
        "batch": batch,
        "seq_len": seq,
        "total_self_cpu_ms": total / 1000.0,
        "ops": [
            {
                "name": e.key,
                "self_cpu_ms": e.self_cpu_time_total / 1000.0,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in rows
        ],
        "matmuls_by_shape": [
            {
                "name": e.key,
                "shapes": str(e.input_shapes),
                "self_cpu_ms": e.self_cpu_time_total / 1000.0,
                "share": e.self_cpu_time_total / total,
                "calls": e.count,
            }
            for e in shaped[:TOP_OPS]
        ],
        "matmul_share_by_component": dict(sorted(components.items(), key=lambda kv: -kv[1])),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", action="append", help="smollm2 or llama<hidden> (repeatable)")
    p.add_argument("--shape", action="append", type=parse_shape, help="BxT, e.g. 4x256")
    p.add_argument("--modes", default=ALL_MODES)
    p.add_argument("--layers", type=int, default=2, help="decoder layers of the synthetic llama")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", default="quaff", help="modes to profile ('' none)")
    p.add_argument("--out", type=Path, default=Path("bench/out/speed"))
    p.add_argument("--json", type=Path, default=Path("bench/results/speed.json"))
    args = p.parse_args(argv)
    args.model = args.model or ["smollm2", "llama2048"]
    args.shape = args.shape or [(4, 256), (1, 1024)]
    return args


def main(argv: list[str] | None = None) -> None:
    """Run every shape, then the profiles; write one JSON record."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    record: dict[str, Any] = {
        "command": command_line("bench.speed", argv),
        "environment": environment(args.threads),
        "models": args.model,
        "layers_synthetic": args.layers,
        "steps": args.steps,
        "warmup": args.warmup,
        "shapes": {},
        "profiles": [],
    }
    for batch, seq in args.shape:
        key = f"{batch}x{seq}"
        record["shapes"][key] = run_step_bench(args, batch, seq, args.out / f"step_{key}.json")
        write_json(args.json, record)
    batch, seq = args.shape[0]
    for mode in [m for m in args.profile.split(",") if m]:
        print(f"\nprofiling one {mode} step of {args.model[0]} at {batch}x{seq}", flush=True)
        prof = top_ops(mode, args.model[0], batch, seq, args.layers)
        for op in prof["ops"][:8]:
            print(f"  {op['share']:6.1%} {op['self_cpu_ms']:9.1f} ms  {op['name']}")
        for part, share in prof["matmul_share_by_component"].items():
            print(f"  {share:6.1%} of the step: {part}")
        for op in prof["matmuls_by_shape"][:6]:
            print(f"  {op['share']:6.1%} {op['self_cpu_ms']:9.1f} ms  {op['name']} {op['shapes']}")
        record["profiles"].append(prof)
        write_json(args.json, record)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
