"""Inference benchmark: decode tokens/s and time to first token of the serving path.

`python -m bench.infer [--model M] [--tokens N] [--repeats R]`: SmolLM2 as the fp32 base, the
bf16 base and the Quaff int8 base with a LoRA adapter (r=16, all linear layers; fp32 and bf16
compute), each at 1 and 8 concurrent streams, through `infer.generate.generate_rows` (the code
`quaff infer` runs, minus HTTP). Memory is the bytes of the loaded weights and buffers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.common import environment
from infer.cache import module_bytes
from infer.generate import Row, Sampling, TokenEvent, generate_rows
from quaff_core import add_lora, calibrate, convert_to_quaff
from quaff_core.models.loading import load_base_model

PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}]


def build(mode: str, model_id: str) -> tuple[Any, Any]:
    """The model of a mode: fp32, bf16, quaff-int8 (fp32 compute) or quaff-int8-bf16."""
    model, tokenizer = load_base_model(model_id)
    if mode == "bf16":
        nn.Module.to(model, torch.bfloat16)
    if mode.startswith("quaff"):
        text = tokenizer.apply_chat_template(PROMPT, tokenize=False)
        batch = tokenizer([text] * 2, return_tensors="pt")
        outliers = calibrate(model, [dict(batch)], strategy="top_abs", max_ratio=0.01)
        dtype = torch.bfloat16 if mode.endswith("bf16") else None
        if dtype is not None:
            nn.Module.to(model, dtype)
        convert_to_quaff(model, outliers, compute_dtype=dtype)
        model = add_lora(model, r=16, alpha=32)
    return model.eval(), tokenizer


def run_streams(model: Any, tokenizer: Any, streams: int, tokens: int) -> dict[str, float]:
    """One batch of `streams` rows: mean time to first token and decode tokens/s."""
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    first: list[float] = []
    counts = [0] * streams

    def sink(i: int) -> Callable[[TokenEvent], None]:
        def take(event: TokenEvent) -> None:
            if counts[i] == 0:
                first.append(time.perf_counter())
            counts[i] += event.token_id is not None

        return take

    rows = [Row(ids, tokens, sink(i)) for i in range(streams)]
    start = time.perf_counter()
    generate_rows(model, tokenizer, rows, Sampling(temperature=0.0))
    end = time.perf_counter()
    ttft = statistics.mean(first) - start
    decoded = sum(counts) - streams  # tokens after each stream's first
    return {"ttft_s": ttft, "decode_tokens_per_s": decoded / max(end - max(first), 1e-9),
            "tokens": float(sum(counts))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path("bench/results/infer.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = ("fp32", "bf16", "quaff-int8", "quaff-int8-bf16")
    models = {m: build(m, args.model) for m in modes}
    rows: list[dict[str, Any]] = []
    for streams in (1, 8):
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.repeats):  # interleaved, so drift hits every mode alike
            for mode in modes:
                runs[mode].append(run_streams(*models[mode], streams, args.tokens))
        for mode in modes:
            median = {k: statistics.median(r[k] for r in runs[mode]) for k in runs[mode][0]}
            memory = module_bytes(models[mode][0]) / 2**20
            rows.append({"mode": mode, "streams": streams, "memory_mb": memory, **median})
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"env": environment(args.threads), "rows": rows}, indent=1))


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per mode and stream count, with ratios to bf16 at the same count."""
    bf16 = {r["streams"]: r for r in rows if r["mode"] == "bf16"}
    lines = ["| mode | streams | decode tok/s | x bf16 | TTFT s | weights MB | x bf16 |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        ref = bf16[r["streams"]]
        lines.append(
            f"| {r['mode']} | {r['streams']} | {r['decode_tokens_per_s']:.1f} | "
            f"{r['decode_tokens_per_s'] / ref['decode_tokens_per_s']:.2f} | {r['ttft_s']:.3f} | "
            f"{r['memory_mb']:.0f} | {r['memory_mb'] / ref['memory_mb']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
