"""Calibration time of SmolLM2-135M-Instruct on 64 examples, as a job runs it.

    nice -n 5 .venv/bin/python -m bench.calibration_time

The examples are the bench task's worked (long) date questions, tokenised and batched exactly as
training does (`tokenize_for`, `calibration_batches`), the model cast to bf16 where the CPU
computes it natively (as `quantize_base` does). Shared statistics (q/k/v and gate/up measured
once, the default) and per-layer statistics run interleaved; the maps must be equal.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from bench.task import examples
from quaff_core.calibration.calibrate import calibrate
from quaff_core.data.jsonl import examples_from_dicts
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.capabilities import device_class, native_bf16
from quaff_core.training.datasets import tokenize_for
from quaff_core.training.prepare import calibration_batches


def main(argv: list[str] | None = None) -> None:
    """Print the calibration time with and without shared statistics."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_base_model("SmolLM2-135M-Instruct")
    if native_bf16("cpu"):
        model.to(torch.bfloat16)  # type: ignore[arg-type]  # transformers types .to() narrowly
    rows = list(examples(args.examples, random.Random(0), set(), worked=True))
    config = TrainConfig(calibration_examples=args.examples)
    dataset = tokenize_for(examples_from_dicts(rows), tokenizer, config, "bench")
    pad = int(tokenizer.pad_token_id)
    n_tokens = sum(len(dataset[i]["input_ids"]) for i in range(len(dataset)))
    best: dict[bool, float] = {True: float("inf"), False: float("inf")}
    maps = {}
    for _ in range(args.rounds):
        for share in (True, False):
            start = time.perf_counter()
            maps[share] = calibrate(
                model,
                calibration_batches(dataset, config, pad),
                strategy=config.outlier_strategy,
                threshold=config.outlier_threshold,
                max_ratio=config.outlier_max_ratio,
                share_inputs=share,
            )
            best[share] = min(best[share], time.perf_counter() - start)
    print(
        f"{device_class('cpu')}, {args.threads} threads, {len(dataset)} examples, {n_tokens} "
        f"tokens, batch {config.batch_size}: calibration {best[True]:.2f} s shared, "
        f"{best[False]:.2f} s per layer ({best[False] / best[True]:.2f}x); "
        f"maps equal: {maps[True].layers == maps[False].layers}"
    )


if __name__ == "__main__":
    main()
