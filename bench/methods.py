"""Every PEFT method, Quaff int8 base vs unquantized base: step time and final validation loss.

    .venv/bin/python -m bench.methods --model SmolLM2-135M-Instruct --steps 12 \
        --out bench/results/methods.json

Each run is `quaff_core.training.train` on examples/chat.jsonl (validation:
examples/chat_valid.jsonl) with the method's usual learning rate and default compute settings
(`compute_dtype: auto`: bf16
where the CPU computes it natively, as on the host of bench/RESULTS.md, else float32; compile
off for these short runs); the step time is the median wall time between training progress
reports (after the first, which includes warm-up).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import command_line, environment, write_json
from quaff_core.options.spec import PEFT_METHODS
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.callbacks import NullCallbacks, ProgressEvent
from quaff_core.training.train import train

ROOT = Path(__file__).resolve().parent.parent
TRAIN, VALID = ROOT / "examples" / "chat.jsonl", ROOT / "examples" / "chat_valid.jsonl"
# the learning rate each method is usually trained with (virtual tokens and IA3 need more)
LEARNING_RATES = {
    "lora": 2e-4,
    "ia3": 3e-3,
    "prefix_tuning": 3e-2,
    "prompt_tuning": 3e-2,
    "p_tuning": 3e-3,
}


class StepClock(NullCallbacks):
    """Wall time between training progress reports."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.valid_loss: float | None = None

    def on_progress(self, event: ProgressEvent) -> None:
        """Stamp each training step; keep the last validation loss."""
        if event.valid_loss is not None:
            self.valid_loss = event.valid_loss
        else:
            self.times.append(time.perf_counter())


def run_one(model: str, method: str, quantization: str, steps: int) -> dict[str, Any]:
    """One short training run: the median step seconds and the final validation loss."""
    config = TrainConfig(
        peft_method=method,  # type: ignore[arg-type]
        quantization=quantization,  # type: ignore[arg-type]
        learning_rate=LEARNING_RATES[method],
        max_steps=steps,
        batch_size=4,
        max_seq_length=256,
        num_virtual_tokens=16,
        calibration_examples=16,
        compile=False,
    )
    clock = StepClock()
    with tempfile.TemporaryDirectory(prefix="quaff-bench-methods-") as tmp:
        train(model, TRAIN, tmp, config=config, validation_data=VALID, callbacks=clock)
    gaps = [b - a for a, b in zip(clock.times, clock.times[1:], strict=False)]
    return {
        "method": method,
        "quantization": quantization,
        "step_seconds": statistics.median(gaps) if gaps else None,
        "valid_loss": clock.valid_loss,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Method | Quaff step s | unquantized step s | ratio | their validation losses."""
    lines = ["method         quaff_s  unquantized_s  ratio  quaff_loss  unquantized_loss"]
    for method in PEFT_METHODS:
        q = next(r for r in rows if r["method"] == method and r["quantization"] == "quaff")
        f = next(r for r in rows if r["method"] == method and r["quantization"] == "none")
        ratio = q["step_seconds"] / f["step_seconds"] if f["step_seconds"] else float("nan")
        lines.append(
            f"{method:<14} {q['step_seconds']:7.3f} {f['step_seconds']:14.3f} {ratio:6.2f} "
            f"{q['valid_loss']:11.4f} {f['valid_loss']:17.4f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every method on both bases; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "methods.json")
    args = parser.parse_args(argv)
    rows = [
        run_one(args.model, method, quantization, args.steps)
        for method in PEFT_METHODS
        for quantization in ("quaff", "none")
    ]
    print(table(rows))
    write_json(
        args.out,
        {
            "command": command_line("bench.methods", argv),
            "model": args.model,
            "steps": args.steps,
            "environment": environment(torch.get_num_threads()),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
