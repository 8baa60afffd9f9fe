"""Where one-stream decode time goes in transformers: eager, static KV cache, static cache with
`torch.compile`, and bf16, on SmolLM2 (greedy, the same prompt, best of 3 after a warm-up).

    .venv/bin/python -m bench.decode_paths --threads 1 --json bench/results/decode_paths.json

Prints tokens/s per path and whether each path's greedy tokens equal float32 eager's.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import command_line, environment, write_json
from quaff_core.models.loading import load_base_model
from quaff_core.options.base_models import SMOLLM2

PROMPT = (
    "You are a patient teacher. In plain words, explain to a curious twelve-year-old why the sky "
    "looks blue during the day but turns red at sunset."
)


def timed(model: Any, inputs: Any, tokens: int, **kw: Any) -> tuple[float, list[int]]:
    """Seconds for one greedy `generate` of exactly `tokens` new tokens, and those tokens."""
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens,
                             do_sample=False, **kw)  # fmt: skip
        seconds = time.perf_counter() - start
    return seconds, out[0, inputs["input_ids"].shape[1] :].tolist()


def paths(model: Any) -> dict[str, tuple[Any, dict[str, Any]]]:
    """The decode paths compared: (model, generate keywords)."""
    compiled = copy.deepcopy(model)
    compiled.forward = torch.compile(compiled.forward, dynamic=False)
    return {
        "float32 eager": (model, {}),
        "float32 static cache": (model, {"cache_implementation": "static"}),
        "float32 static cache + compile": (compiled, {"cache_implementation": "static"}),
        "bf16 eager": (copy.deepcopy(model).to(torch.bfloat16), {}),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time every path; print and save."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_base_model(SMOLLM2)
    messages = [{"role": "user", "content": PROMPT}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)  # fmt: skip
    rows: dict[str, Any] = {}
    reference: list[int] | None = None
    for name, (m, kw) in paths(model.eval()).items():
        first, _ = timed(m, inputs, args.tokens, **kw)  # warm-up (compiles)
        runs = [timed(m, inputs, args.tokens, **kw) for _ in range(3)]
        reference = reference if reference is not None else runs[0][1]
        best = min(seconds for seconds, _ in runs)
        rows[name] = {"tok_s": args.tokens / best, "first_call_s": first,
                      "same_tokens_as_float32_eager": runs[0][1] == reference}  # fmt: skip
        print(f"{name}: {rows[name]['tok_s']:.1f} tok/s (first call {first:.1f} s), "
              f"same tokens: {rows[name]['same_tokens_as_float32_eager']}", flush=True)  # fmt: skip
    result = {
        "command": command_line("bench.decode_paths", argv),
        "environment": environment(args.threads),
        "tokens": args.tokens,
        "paths": rows,
    }
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
