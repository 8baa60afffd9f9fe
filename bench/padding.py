"""Less padding: training tokens per second with and without length-grouped batches.

    .venv/bin/python -m bench.padding --json bench/results/padding.json

Quaff defaults on SmolLM2 (one prepared base, one outlier map, shared by every run), the bench's
date task with short answers and its worked variant (~150-token answers), `training.group_by_length`
on and off, interleaved. Tokens/s counts the trained (non-padding) tokens from the second step to
the last (the first step's compile and first touches left out), so both settings are measured on
the same work: what grouping saves is the padding the model would otherwise compute.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import command_line, environment, write_json
from bench.job import make_data
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.base import TrainingBase, prepare_base
from quaff_core.training.callbacks import NullCallbacks, ProgressEvent
from quaff_core.training.datasets import TrainingData, tokenize_data
from quaff_core.training.runtime import resolve_runtime
from quaff_core.training.train import train


class Clock(NullCallbacks):
    """Times each logged step and counts its tokens."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, int]] = []

    def on_progress(self, event: ProgressEvent) -> None:
        if event.train_loss is not None:
            self.marks.append((time.monotonic(), event.trained_tokens))

    def tokens_per_second(self) -> float:
        """Trained tokens per second from the first logged step to the last."""
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0)


def config(args: argparse.Namespace, grouped: bool) -> TrainConfig:
    """Defaults, the run's length and batch, grouping on or off."""
    return TrainConfig(
        n_epochs=1, max_steps=args.steps, batch_size=args.batch, group_by_length=grouped
    )


def one_run(base: TrainingBase, data: TrainingData, cfg: TrainConfig, out: Path) -> float:
    """Train once on the prepared base; its tokens/s."""
    clock = Clock()
    train(base, data, out, config=cfg, callbacks=clock)
    return clock.tokens_per_second()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Every (variant, grouping) run `--repeats` times, interleaved; print and save the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="SmolLM2-135M-Instruct")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="quaff-bench-padding-") as tmp_dir:
        tmp = Path(tmp_dir)
        model, tokenizer = load_base_model(args.model)
        sets = {}
        for variant in ("short", "long"):
            path = make_data(tmp, variant, args.steps * args.batch, seed=3)
            sets[variant] = tokenize_data(path, None, tokenizer, config(args, True))
        cfg = config(args, True)
        base = prepare_base(
            model,
            tokenizer,
            base_id=args.model,
            config=cfg,
            runtime=resolve_runtime(cfg),
            outlier_map=None,
            data=sets["short"],
            callbacks=NullCallbacks(),
        )
        for repeat in range(args.repeats):
            for variant, data in sets.items():
                for grouped in (False, True):
                    name = "grouped" if grouped else "shuffled"
                    out = tmp / f"{variant}-{name}-{repeat}"
                    tps = one_run(base, data, config(args, grouped), out)
                    rows.setdefault(variant, {}).setdefault(name, []).append(tps)
                    print(f"{variant} {name}: {tps:.0f} tokens/s", flush=True)
    result = {
        "command": command_line("bench.padding", argv),
        "environment": environment(os.cpu_count() or 1),
        "steps": args.steps,
        "batch": args.batch,
        "tokens_per_second": rows,
    }
    print(f"\nhost: {result['environment']['device']}")
    print("| data | shuffled tokens/s | grouped tokens/s | grouped vs shuffled |")
    print("|---|---:|---:|---:|")
    for variant, by in rows.items():
        a, b = max(by["shuffled"]), max(by["grouped"])
        print(f"| {variant} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
