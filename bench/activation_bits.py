"""Logits error of the `onednn` backend (AVX2 / AVX-VNNI CPUs: 8-bit activations, 7-bit weights).

    .venv/bin/python -m bench.activation_bits --json bench/results/activation_bits.json

SmolLM2-135M-Instruct, real activations, the prompt sets of `bench.calibration_curve`
(calibration prompts, held-out task prompts, held-out chat). One default calibration; then the
relative logits error against the fp32 model of plain W8A8 (no outlier channel) and Quaff, each
on the int8 path of VNNI CPUs and CUDA (`int_mm`, 8-bit weights) and on `onednn` (the weights
requantized to 7 bits), every layer on the quantized path. The accuracy bars for a backend:
error at most 0.5x plain W8A8's (8 bits), and at most 1.2x Quaff's error on the int8 path, on
the held-out prompts. (7-bit activations with 8-bit weights, measured this way on an AVX2 host,
gave 0.10 on the held-out task: 2.4x Quaff's int8 error.)
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from bench.calibration_curve import (
    exact_int8_mm,
    int8_everywhere,
    logits_error,
    logits_of,
    prompt_sets,
)
from bench.common import command_line, environment, write_json
from quaff_core.calibration.calibrate import DEFAULT_MAX_RATIO, calibrate
from quaff_core.models.loading import load_base_model
from quaff_core.quant.capabilities import BackendSetting, device_class
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.targets import in_features, quantizable_linears

HELD_OUT = ("held_task", "held_chat")


def converted(base: nn.Module, om: OutlierMap, backend: BackendSetting) -> nn.Module:
    """A Quaff copy of `base` by `om` with every layer on `backend`."""
    return convert_to_quaff(copy.deepcopy(base), om, backend=backend)


def errors(base: nn.Module, om: OutlierMap, sets: Any, refs: Any) -> dict[str, dict[str, float]]:
    """Logits error per prompt set of `om` on the int8 path (exact) and on oneDNN's."""
    with int8_everywhere(), mock.patch("quaff_core.quant.autograd.int8_mm", exact_int8_mm):
        eight = logits_error(converted(base, om, "int_mm"), sets, refs)
    with int8_everywhere():
        seven = logits_error(converted(base, om, "onednn"), sets, refs)
    return {"int_mm (W8A8)": eight, "onednn (W7A8)": seven}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--calibration-examples", type=int, default=24)
    p.add_argument("--task-examples", type=int, default=16, help="held-out task prompts")
    p.add_argument(
        "--max-ratios", default=str(DEFAULT_MAX_RATIO), help="comma list of map budgets to measure"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench/out/activation_bits"))
    p.add_argument("--json", type=Path, default=Path("bench/results/activation_bits.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Measure; print the table and the bars; write the JSON record."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    base, tokenizer = load_base_model(args.model)
    base.eval()
    sets = prompt_sets(tokenizer, args)
    refs = {name: logits_of(base, batches) for name, batches in sets.items()}
    widths = {n: in_features(m) for n, m in quantizable_linears(base).items()}
    plain = OutlierMap(layers={n: [] for n in widths}, in_features=widths)
    rows = {"plain": errors(base, plain, sets, refs)}
    for ratio in (float(r) for r in args.max_ratios.split(",")):
        name = "quaff" if ratio == DEFAULT_MAX_RATIO else f"quaff {100 * ratio:g}%"
        rows[name] = errors(base, calibrate(base, sets["calibration"], max_ratio=ratio), sets, refs)
    print(f"{device_class('cpu')}; {args.model}; logits relative error vs fp32")
    print("| map | backend | " + " | ".join(sets) + " |")
    print("|---|---|" + "---:|" * len(sets))
    for name, by_bits in rows.items():
        for bits, errs in by_bits.items():
            print(f"| {name} | {bits} | " + " | ".join(f"{errs[s]:.4f}" for s in sets) + " |")
    w8a8, q8 = rows["plain"]["int_mm (W8A8)"], rows["quaff"]["int_mm (W8A8)"]
    q7 = rows["quaff"]["onednn (W7A8)"]
    bars = {s: {"vs_w8a8": q7[s] / w8a8[s], "vs_quaff_int8": q7[s] / q8[s]} for s in HELD_OUT}
    for s, b in bars.items():
        print(
            f"{s}: Quaff on onednn {b['vs_w8a8']:.2f}x plain W8A8 (bar 0.5x), "
            f"{b['vs_quaff_int8']:.2f}x Quaff on int_mm (bar 1.2x)"
        )
    record: dict[str, Any] = {"command": command_line("bench.activation_bits", argv)}
    record.update(environment=environment(args.threads), model=args.model, rows=rows, bars=bars)
    write_json(args.json, record)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
