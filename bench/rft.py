"""Reinforcement fine-tuning (GRPO, a string_check grader) beside supervised fine-tuning on the
same date task: exact match of the base, of each tuned adapter, and the reward during RFT.

    nice -n 5 .venv/bin/python -m bench.rft --out bench/results/rft.json

The task is bench/task.py's (a date in words -> ISO 8601). Both runs train LoRA on the Quaff
int8 base of the same model with the same prompts, steps and learning rate: supervised on the
answers, reinforcement on the prompts with reward = `string_check` eq of the sample against
the ISO date (`--operation like`: the sample contains it; the answer is never shown to it).
Exact match is greedy decoding of the test split, scored on the unquantized base with the
adapter.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from bench.common import command_line, environment, write_json
from bench.task import write_splits
from quaff_core.data.jsonl import Example, examples_from_dicts, read_examples
from quaff_core.graders.registry import GradingContext
from quaff_core.lm.exact_match import prompt_and_answer, score
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.training.rft import GraderReward
from quaff_core.training.train import train

GRADER = {
    "type": "string_check",
    "name": "iso_date",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}


def as_prompts(examples: list[Example]) -> list[Example]:
    """The RFT lines of chat examples: the prompt, and the answer as `reference_answer`."""
    rows = []
    for example in examples:
        prompt, answer = prompt_and_answer(example)
        rows.append({"messages": prompt, "reference_answer": answer})
    return examples_from_dicts(rows)


def exact_match(model_id: str, adapter: Path | None, test: list[Example]) -> float:
    """Greedy exact match of the base (adapter None) or of base + adapter, unquantized."""
    base, tokenizer = load_base_model(model_id)
    model = PeftModel.from_pretrained(base, str(adapter)) if adapter is not None else base
    return score(model, tokenizer, test, max_new_tokens=12).exact_match


def run(args: argparse.Namespace, method: Any, data: list[Example], out: Path) -> dict[str, Any]:
    """Train one method; its adapter, time and (RFT) reward curve."""
    config = TrainConfig(
        method=method,
        n_epochs=1,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        lora_r=16,
        max_seq_length=128,
        rft_max_completion_tokens=16,
        rft_compute_multiplier=args.compute_multiplier,
        compile=False,  # these runs are too short to win back inductor's warm-up
        seed=args.seed,
    )
    grader = {**GRADER, "operation": args.operation}
    reward = GraderReward(grader, GradingContext()) if method == "reinforcement" else None
    started = time.perf_counter()
    done = train(args.model, data, out / method, config=config, reward=reward)
    print(f"{method}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    rewards = [m["train_reward_mean"] for m in done.metrics if "train_reward_mean" in m]
    return {
        "adapter": done.adapter_dir,
        "seconds": round(time.perf_counter() - started, 1),
        "steps": done.final_step,
        "reward_curve": rewards,
    }


def table(scores: dict[str, float], runs: dict[str, dict[str, Any]]) -> str:
    """The results as a markdown table, and the RFT reward per step."""
    lines = ["| model | exact match | train s | steps |", "|---|---|---|---|"]
    lines.append(f"| base | {scores['base']:.3f} | - | - |")
    for method, result in runs.items():
        lines.append(
            f"| {method} | {scores[method]:.3f} | {result['seconds']} | {result['steps']} |"
        )
    curve = [round(r, 3) for r in runs["reinforcement"]["reward_curve"]]
    return "\n".join([*lines, f"RFT mean reward per step: {curve}"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train both methods, score base and adapters, print the table, write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--train", type=int, default=32, help="training prompts")
    p.add_argument("--test", type=int, default=32, help="test prompts")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--compute-multiplier", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--operation",
        choices=("eq", "like", "ilike"),
        default="eq",
        help="string_check: the sample is the date (eq) or contains it (like)",
    )
    p.add_argument("--out", type=Path, default=None, help="JSON results file")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quaff-bench-rft-") as tmp:
        work = Path(tmp)
        splits = write_splits(work / "data", {"train": args.train, "test": args.test}, args.seed)
        train_set, test = read_examples(splits["train"]), read_examples(splits["test"])
        runs = {
            "supervised": run(args, "supervised", train_set, work),
            "reinforcement": run(args, "reinforcement", as_prompts(train_set), work),
        }
        scores = {"base": exact_match(args.model, None, test)}
        for method, result in runs.items():
            scores[method] = exact_match(args.model, result.pop("adapter"), test)
    record = {
        "environment": environment(torch.get_num_threads()),
        "command": command_line("bench.rft", argv),
        "grader": {**GRADER, "operation": args.operation},
        "exact_match": scores,
        "runs": runs,
    }
    print(table(scores, runs))
    if args.out is not None:
        write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
