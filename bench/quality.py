"""Quality over seeds: fp32 LoRA, Quaff LoRA and plain W8A8 LoRA on one exact-match task.

    .venv/bin/python -m bench.quality --seeds 42,43,44 --json bench/results/quality.json

Every run trains with `quaff_core.training.train` from the same base, data and `TrainConfig`; only
the
quantization differs (none / Quaff, calibrated by `train` itself with the default rule / the same
int8 path with no outlier channel kept). Each (mode, seed) run reports its final validation loss
(`quaff_core.lm.evaluation`, the trainer's own evaluation), the exact match of greedy answers with
its
adapter on the *unquantized* base, and, for Quaff, the outlier stability its checkpoints measured.
The summary gives mean and spread (max - min) over seeds and checks the targets: Quaff's mean
validation loss within +1% of fp32's, below W8A8's by more than the larger seed spread, and its
exact match not below fp32's.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import logging
import statistics
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from peft import PeftModel

from bench.common import command_line, environment, write_json
from bench.task import write_splits
from quaff_core.data.jsonl import Example, read_examples
from quaff_core.lm.exact_match import score
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.targets import in_features, quantizable_linears
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import NullCallbacks, ProgressEvent
from quaff_core.training.prepare import calibrate_on, general_calibration_set
from quaff_core.training.runtime import resolve_runtime
from quaff_core.training.train import train

logger = logging.getLogger("bench.quality")

DEFAULT_MODES = ("fp32", "quaff", "quaff-base", "w8a8")
MODES = (*DEFAULT_MODES, "quaff-exact-head")  # the last: an ablation, run when asked
MODE_LABELS = {
    "fp32": "fp32 LoRA (unquantized base)",
    "quaff": "Quaff LoRA (int8 base + outlier channels calibrated on the job's data)",
    "quaff-base": "Quaff LoRA with the base's map (calibrated on the general chat set)",
    "w8a8": "plain W8A8 LoRA (same int8 path, no outlier channels)",
    "quaff-exact-head": "as quaff, the head's input gradient in the compute dtype (no int8 head)",
}


def train_config(args: argparse.Namespace, mode: str, seed: int) -> TrainConfig:
    """The one TrainConfig of every mode; only `quantization` differs (w8a8 = quaff, empty map)."""
    return TrainConfig(
        n_epochs=1,
        max_steps=args.steps,
        batch_size=args.batch,
        learning_rate=args.lr,
        lr_scheduler="cosine",
        warmup_ratio=args.warmup_ratio,
        max_seq_length=args.max_seq_len,
        seed=seed,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        quantization="none" if mode == "fp32" else "quaff",
        calibration_examples=args.calibration_examples,
        eval_steps=args.eval_every,
        save_steps=args.eval_every,  # each checkpoint re-measures the outlier stability
    )


class Record(NullCallbacks):
    """Prints progress every `every` steps; keeps the stability points `train` reports."""

    def __init__(self, label: str, every: int) -> None:
        self.label, self.every = label, every
        self.stability: list[dict[str, float]] = []

    def on_progress(self, event: ProgressEvent) -> None:
        """One line per `every` steps and per evaluation."""
        if event.valid_loss is not None or event.step % self.every == 0:
            print(f"  [{self.label}] {event.message()}", flush=True)

    def on_event(self, event: TrainEvent) -> None:
        """Keep outlier-stability points; print phase messages."""
        if event.kind == EventKind.OUTLIER_STABILITY:
            self.stability.append({"step": event.data["step"], "recall": event.data["recall"]})
        print(f"  [{self.label}] {event.message}", flush=True)


def no_outlier_map(model: torch.nn.Module, model_id: str) -> OutlierMap:
    """Plain W8A8: every quantizable layer present, no channel kept in high precision."""
    names = quantizable_linears(model)
    return OutlierMap(
        layers={n: [] for n in names},
        in_features={n: in_features(m) for n, m in names.items()},
        model_id=model_id,
    )


def base_map(
    model: torch.nn.Module, tokenizer: Any, config: TrainConfig, model_id: str
) -> OutlierMap:
    """The map the service calibrates once per base: on the general chat set, in the compute
    dtype training will use (a copy of the model: the run converts the original)."""
    calibration, data = general_calibration_set(config, tokenizer)
    work = copy.deepcopy(model).to(resolve_runtime(config).dtype)
    return calibrate_on(
        work,
        data,
        calibration,
        pad_token_id=int(tokenizer.pad_token_id),
        model_id=model_id,
        callbacks=NullCallbacks(),
    )


def run(
    mode: str, seed: int, args: argparse.Namespace, splits: dict[str, list[Example]]
) -> dict[str, Any]:
    """Train one (mode, seed) and score its adapter."""
    config = train_config(args, mode, seed)
    base, tokenizer = load_base_model(args.model)
    reference = copy.deepcopy(base)  # the unquantized base the adapter is scored on
    outlier_map = None
    if mode == "w8a8":
        outlier_map = no_outlier_map(base, args.model)
    elif mode == "quaff-base":
        outlier_map = base_map(base, tokenizer, config, args.model)
    calls = Record(f"{mode} seed {seed}", args.log_every)
    t0 = time.perf_counter()
    exact_head = mock.patch(
        "quaff_core.quant.convert.attach_int8_head_grad", return_value=None
    )  # the ablation: convert_to_quaff attaches no int8 head
    with exact_head if mode == "quaff-exact-head" else contextlib.nullcontext():
        done = train(
            (base, tokenizer),
            splits["train"],
            args.out / f"{mode}-{seed}",
            config=config,
            validation_data=splits["validation"],
            outlier_map=outlier_map,
            callbacks=calls,
            base_model_id=args.model,
        )
    seconds = time.perf_counter() - t0
    if done.adapter_dir is None:
        raise RuntimeError(f"{mode} seed {seed} stopped early: {done.stopped}")
    valid = [r for r in done.metrics if "valid_loss" in r]
    del base
    gc.collect()

    tuned = PeftModel.from_pretrained(reference, str(done.adapter_dir))
    scored = score(tuned, tokenizer, splits["test"], batch_size=args.eval_batch, max_new_tokens=12)
    return {
        "seed": seed,
        "final_valid_loss": valid[-1]["valid_loss"],
        "valid_curve": [{"step": r["step"], "valid_loss": r["valid_loss"]} for r in valid],
        "exact_match": scored.exact_match,
        "outlier_channels": done.outlier_map.num_channels if done.outlier_map else 0,
        "stability": calls.stability,
        "train_seconds": seconds,
    }


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean and spread (max - min) over seeds per mode, and the three targets' verdicts."""
    stats: dict[str, dict[str, float]] = {}
    for mode, rows in runs.items():
        if not rows:
            continue
        losses = [r["final_valid_loss"] for r in rows]
        matches = [r["exact_match"] for r in rows]
        stats[mode] = {
            "valid_loss_mean": statistics.fmean(losses),
            "valid_loss_spread": max(losses) - min(losses),
            "exact_match_mean": statistics.fmean(matches),
            "exact_match_spread": max(matches) - min(matches),
            "seeds": len(rows),
        }
    out: dict[str, Any] = {"modes": stats}
    if {"quaff", "quaff-base"} <= stats.keys():
        own, general = stats["quaff"], stats["quaff-base"]
        out["map_policy"] = {
            "base_map_over_own_map": general["valid_loss_mean"] / own["valid_loss_mean"] - 1.0,
            "loss_difference": general["valid_loss_mean"] - own["valid_loss_mean"],
            "larger_seed_spread": max(own["valid_loss_spread"], general["valid_loss_spread"]),
            "exact_match_difference": general["exact_match_mean"] - own["exact_match_mean"],
        }
    if {"fp32", "quaff", "w8a8"} <= stats.keys():
        fp32, quaff, w8a8 = stats["fp32"], stats["quaff"], stats["w8a8"]
        over = quaff["valid_loss_mean"] / fp32["valid_loss_mean"] - 1.0
        margin = w8a8["valid_loss_mean"] - quaff["valid_loss_mean"]
        spread = max(quaff["valid_loss_spread"], w8a8["valid_loss_spread"])
        out["targets"] = {
            "quaff_over_fp32": over,
            "quaff_within_1pct_of_fp32": over <= 0.01,
            "quaff_below_w8a8_by": margin,
            "larger_seed_spread": spread,
            "quaff_beats_w8a8_beyond_spread": margin > spread,
            "exact_match_not_below_fp32": quaff["exact_match_mean"] >= fp32["exact_match_mean"],
        }
    return out


def table(stats: dict[str, Any]) -> str:
    """The summary as a plain text table."""
    lines = [f"{'mode':<10} {'valid loss (mean ± spread)':>28} {'exact match (mean ± spread)':>29}"]
    for mode, s in stats["modes"].items():
        loss = f"{s['valid_loss_mean']:.4f} ± {s['valid_loss_spread']:.4f}"
        match = f"{s['exact_match_mean']:.3f} ± {s['exact_match_spread']:.3f}"
        lines.append(f"{mode:<10} {loss:>28} {match:>29}")
    for name, value in [*stats.get("targets", {}).items(), *stats.get("map_policy", {}).items()]:
        lines.append(f"  {name}: {value:.4f}" if isinstance(value, float) else f"  {name}: {value}")
    return "\n".join(lines)


def load_splits(args: argparse.Namespace) -> dict[str, list[Example]]:
    """Generate the task (bench/task.py) and read its splits."""
    sizes = {"train": args.train_examples, "validation": args.valid_examples, "test": args.test}
    paths = write_splits(args.out / "task", sizes, seed=args.task_seed, shift_max=args.shift_max)
    return {split: read_examples(path) for split, path in paths.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (sizes default to the recorded configuration)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"of {MODES}")
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-ratio", type=float, default=0.05)
    p.add_argument("--max-seq-len", type=int, default=96)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=15)
    p.add_argument("--calibration-examples", type=int, default=64)
    p.add_argument("--train-examples", type=int, default=2000)
    p.add_argument("--valid-examples", type=int, default=96)
    p.add_argument("--test", type=int, default=100, help="test examples decoded greedily")
    p.add_argument("--task-seed", type=int, default=0)
    p.add_argument("--shift-max", type=int, default=9, help="0 = plain date conversion")
    p.add_argument("--eval-batch", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("bench/out/quality"))
    p.add_argument("--json", type=Path, default=Path("bench/results/quality.json"))
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        p.error(f"unknown modes {unknown}; choose from {MODES}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train every (seed, mode), score every adapter, write the JSON record; returns it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    splits = load_splits(args)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
    record: dict[str, Any] = {
        "command": command_line("bench.quality", argv),
        "environment": environment(args.threads),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "task": {"generator": "bench/task.py", "sizes": {k: len(v) for k, v in splits.items()}},
        "train_config": train_config(args, "quaff", args.seeds[0]).to_dict(),
        "runs": runs,
    }
    for seed in args.seeds:  # modes interleaved per seed: machine drift hits every mode alike
        for mode in args.modes:
            print(f"\n== {MODE_LABELS[mode]}, seed {seed}", flush=True)
            runs[mode].append(run(mode, seed, args, splits))
            record["summary"] = summary(runs)
            write_json(args.json, record)  # partial results survive a later failure
    print("\n" + table(record["summary"]))
    print(f"wrote {args.json}")
    return record


if __name__ == "__main__":
    main()
