"""Quality parity: fine-tune fp32 LoRA, Quaff LoRA and plain W8A8 LoRA on one exact-match task.

    .venv/bin/python -m bench.quality --steps 200 --json bench/results/quality.json

Every mode trains with `quaff_core.train` from the same base, data, seed and `TrainConfig`; only
the quantization differs (none / Quaff with calibrated outlier channels / the same int8 path with
no outlier channels). Validation loss is logged every `--eval-every` steps. Each adapter is then
loaded on the *unquantized* base and scored by exact match of greedy answers on the test split.
The Quaff run also re-measures the outlier channels every `--recalibrate-every` steps
(bench/stability.py) and records the recall of the initial map.
"""

from __future__ import annotations

import argparse
import copy
import gc
import logging
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import command_line, environment, write_json
from bench.stability import OutlierTracker
from bench.task import write_splits
from quaff_core.callbacks import NullCallbacks, TrainCallbacks
from quaff_core.config import TrainConfig
from quaff_core.convert import convert_to_quaff
from quaff_core.data import Example, read_examples
from quaff_core.exact_match import normalise, score
from quaff_core.models import load_base_model
from quaff_core.outliers import OutlierMap
from quaff_core.prepare import calibrate_on, calibration_batches
from quaff_core.targets import quantizable_linears
from quaff_core.tokenize import PadCollator, tokenize_examples
from quaff_core.train import train

logger = logging.getLogger("bench.quality")

MODES = ("fp32", "quaff", "w8a8")
MODE_LABELS = {
    "fp32": "fp32 LoRA (unquantized base)",
    "quaff": "Quaff LoRA (int8 base + calibrated outlier channels)",
    "w8a8": "plain W8A8 LoRA (same int8 path, no outlier channels)",
}


def train_config(args: argparse.Namespace, mode: str) -> TrainConfig:
    """The one TrainConfig of every mode; only `quantization` differs (w8a8 = quaff, empty map)."""
    return TrainConfig(
        n_epochs=1,
        max_steps=args.steps,
        batch_size=args.batch,
        learning_rate=args.lr,
        lr_scheduler="cosine",
        warmup_ratio=args.warmup_ratio,
        max_seq_length=args.max_seq_len,
        seed=args.seed,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        quantization="none" if mode == "fp32" else "quaff",
        calibration_examples=args.calibration_examples,
        eval_steps=args.eval_every,
        save_steps=0,
    )


class Log(NullCallbacks):
    """Print training progress every `every` steps and phase messages."""

    def __init__(self, mode: str, every: int) -> None:
        self.mode = mode
        self.every = every

    def on_progress(self, event: Any) -> None:
        """One line per `every` steps and per evaluation."""
        if event.valid_loss is not None or event.step % self.every == 0:
            print(f"  [{self.mode}] {event.message()}", flush=True)

    def on_event(self, message: str) -> None:
        """Phase messages."""
        print(f"  [{self.mode}] {message}", flush=True)


class Both(NullCallbacks):
    """Forward progress and events to several callbacks."""

    def __init__(self, *targets: TrainCallbacks) -> None:
        self.targets = targets

    def on_progress(self, event: Any) -> None:
        """Forward."""
        for t in self.targets:
            t.on_progress(event)

    def on_event(self, message: str) -> None:
        """Forward."""
        for t in self.targets:
            t.on_event(message)


def calibration_set(
    tokenizer: Any, examples: list[Example], config: TrainConfig
) -> tuple[Any, PadCollator, list[dict[str, torch.Tensor]]]:
    """Tokenised training set, its collator, and the calibration batches `train` would use."""
    dataset = tokenize_examples(examples, tokenizer, max_seq_length=config.max_seq_length)
    collator = PadCollator(pad_token_id=int(tokenizer.pad_token_id))
    batches = list(
        calibration_batches(dataset, collator, config.calibration_examples, config.batch_size)
    )
    return dataset, collator, batches


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module, tokenizer: Any, examples: list[Example], config: TrainConfig
) -> dict[str, float]:
    """Token-weighted mean next-token CE and argmax accuracy on the labelled (answer) tokens."""
    dataset = tokenize_examples(examples, tokenizer, max_seq_length=config.max_seq_length)
    collator = PadCollator(pad_token_id=int(tokenizer.pad_token_id))
    was_training = model.training
    model.eval()
    loss_sum, correct, total = 0.0, 0, 0
    try:
        for start in range(0, len(dataset), config.batch_size):
            end = min(len(dataset), start + config.batch_size)
            batch = collator([dataset[i] for i in range(start, end)])
            logits = (
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                .logits[:, :-1]
                .float()
            )
            target = batch["labels"][:, 1:]
            keep = target != -100
            loss_sum += float(
                torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
            )
            correct += int((logits[keep].argmax(-1) == target[keep]).sum())
            total += int(keep.sum())
    finally:
        model.train(was_training)
    return {"valid_loss": loss_sum / max(total, 1), "valid_token_accuracy": correct / max(total, 1)}


def run_mode(
    mode: str, args: argparse.Namespace, splits: dict[str, list[Example]]
) -> dict[str, Any]:
    """Train one mode; returns its curves, final validation loss and (quaff) stability record."""
    config = train_config(args, mode)
    base, tokenizer = load_base_model(args.model)
    result: dict[str, Any] = {"label": MODE_LABELS[mode]}
    valid = splits["validation"]
    outlier_map: OutlierMap | None = None
    tracker: OutlierTracker | None = None
    if mode != "fp32":
        dataset, collator, batches = calibration_set(tokenizer, splits["train"], config)
        if mode == "quaff":
            outlier_map = calibrate_on(
                base, dataset, collator, config, model_id=args.model, callbacks=NullCallbacks()
            )
        else:  # plain W8A8: every layer present, no channel kept in high precision
            names = quantizable_linears(base)
            outlier_map = OutlierMap(
                layers={n: [] for n in names},
                in_features={n: m.in_features for n, m in names.items()},
                model_id=args.model,
            )
        result["outlier_channels"] = outlier_map.num_channels
        quantized = convert_to_quaff(copy.deepcopy(base), outlier_map, momentum=config.momentum)
        result["initial_valid"] = validation_loss(quantized, tokenizer, valid, config)
        if mode == "quaff" and args.recalibrate_every:
            tracker = OutlierTracker(base, batches, outlier_map, every=args.recalibrate_every)
            tracker.record(0, quantized)  # after conversion, before any update
            result["initial_map"] = outlier_map.to_dict()
        del quantized
        gc.collect()
    else:
        result["initial_valid"] = validation_loss(base, tokenizer, valid, config)
    before = result["initial_valid"]["valid_loss"]
    print(f"  [{mode}] validation loss before training: {before:.4f}", flush=True)
    callbacks: TrainCallbacks = Log(mode, args.log_every)
    if tracker is not None:
        callbacks = Both(callbacks, tracker)
    out = args.out / mode
    t0 = time.perf_counter()
    done = train(
        (base, tokenizer),
        splits["train"],
        out,
        config=config,
        validation_data=splits["validation"],
        outlier_map=outlier_map,
        callbacks=callbacks,
        base_model_id=args.model,
    )
    result["train_seconds"] = time.perf_counter() - t0
    if done.adapter_dir is None:
        raise RuntimeError(f"{mode} training stopped early: {done.stopped}")
    result["adapter_dir"] = str(done.adapter_dir)
    result["train_curve"] = [
        {"step": r["step"], "train_loss": r["train_loss"]}
        for r in done.metrics
        if "train_loss" in r
    ]
    result["valid_curve"] = [
        {
            "step": r["step"],
            "valid_loss": r["valid_loss"],
            "valid_token_accuracy": r["valid_mean_token_accuracy"],
        }
        for r in done.metrics
        if "valid_loss" in r
    ]
    result["final_valid_loss"] = result["valid_curve"][-1]["valid_loss"]
    result["valid_curve"].insert(0, {"step": 0, **result["initial_valid"]})
    result["steps"] = done.final_step
    result["trained_tokens"] = done.trained_tokens
    if tracker is not None:
        result["stability"] = {
            "every": args.recalibrate_every,
            "calibration_examples": config.calibration_examples,
            "initial_channels": tracker.initial.num_channels,
            "points": [p.to_dict() for p in tracker.points],
        }
    del base, done, tracker
    gc.collect()
    return result


def evaluate(
    adapter_dir: str | None, args: argparse.Namespace, test: list[Example]
) -> dict[str, Any]:
    """Exact match of greedy answers with the adapter on the unquantized fp32 base (None: base)."""
    from peft import PeftModel

    base, tokenizer = load_base_model(args.model)
    model = PeftModel.from_pretrained(base, adapter_dir) if adapter_dir else base
    t0 = time.perf_counter()
    scored = score(
        model,
        tokenizer,
        test,
        batch_size=args.eval_batch,
        max_new_tokens=args.max_new_tokens,
    )
    samples = [
        {"prediction": p, "answer": a}
        for p, a in zip(scored.predictions[:5], scored.answers[:5], strict=True)
    ]
    return {
        "exact_match": scored.exact_match,
        "n_test": len(test),
        "decode_seconds": time.perf_counter() - t0,
        "samples": samples,
        "wrong": [
            {"prediction": p, "answer": a}
            for p, a in zip(scored.predictions, scored.answers, strict=True)
            if normalise(p) != normalise(a)
        ][:10],
    }


def load_splits(args: argparse.Namespace) -> dict[str, list[Example]]:
    """Generate the task (bench/task.py) and read its splits; test is cut to `--test-examples`."""
    sizes = {"train": args.train_examples, "validation": args.valid_examples, "test": args.test}
    paths = write_splits(args.out / "task", sizes, seed=args.task_seed, shift_max=args.shift_max)
    return {split: read_examples(path) for split, path in paths.items()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags (sizes default to the `make bench` configuration)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--modes", default=",".join(MODES), help=f"of {MODES}")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-ratio", type=float, default=0.05)
    p.add_argument("--max-seq-len", type=int, default=96)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eval-every", type=int, default=15)
    p.add_argument("--calibration-examples", type=int, default=64)
    p.add_argument("--recalibrate-every", type=int, default=15, help="0 = no stability record")
    p.add_argument("--train-examples", type=int, default=2000)
    p.add_argument("--valid-examples", type=int, default=96)
    p.add_argument("--test", type=int, default=100, help="test examples decoded greedily")
    p.add_argument("--task-seed", type=int, default=0)
    p.add_argument("--shift-max", type=int, default=9, help="0 = plain date conversion")
    p.add_argument("--eval-batch", type=int, default=25)
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("bench/out/quality"))
    p.add_argument("--json", type=Path, default=Path("bench/results/quality.json"))
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        p.error(f"unknown modes {unknown}; choose from {MODES}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Train every mode, score every adapter, write the JSON record."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    splits = load_splits(args)
    record: dict[str, Any] = {
        "command": command_line("bench.quality", argv),
        "environment": environment(args.threads),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "task": {
            "generator": "bench/task.py (words date -> ISO 8601 date; half the questions ask "
            f"for 1..{args.shift_max} days later)"
            if args.shift_max
            else "bench/task.py (words date -> ISO 8601 date)",
            "sizes": {k: len(v) for k, v in splits.items()},
            "seed": args.task_seed,
        },
        "train_config": train_config(args, "quaff").to_dict(),
        "modes": {},
    }
    print(f"task: {record['task']['sizes']}; {args.steps} steps of batch {args.batch}", flush=True)
    for mode in args.modes:
        print(f"\n== training {mode}: {MODE_LABELS[mode]}", flush=True)
        record["modes"][mode] = run_mode(mode, args, splits)
        write_json(args.json, record)  # partial results survive a later failure
    print("\n== exact match on the unquantized base (greedy)", flush=True)
    record["base_exact_match"] = evaluate(None, args, splits["test"])
    print(f"  base model: {record['base_exact_match']['exact_match']:.3f}", flush=True)
    for mode in args.modes:
        info = record["modes"][mode]
        info.update(evaluate(info["adapter_dir"], args, splits["test"]))
        print(
            f"  {mode}: final valid loss {info['final_valid_loss']:.4f}, "
            f"exact match {info['exact_match']:.3f}",
            flush=True,
        )
        write_json(args.json, record)
    write_json(args.json, record)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
