"""Calibration curve: whole-model logits error vs the fraction of channels kept in high precision.

    .venv/bin/python -m bench.calibration_curve --json bench/results/calibration_curve.json

SmolLM2-135M-Instruct, real activations. Calibrate on the bench task's chat prompts (bench/task.py
train split); evaluate there and on held-out prompts: the task's test split and examples/chat*.jsonl
(other wording). For each rule and max_ratio: `calibrate` -> `convert_to_quaff` (on a copy of the
fp32 model) -> logits relative error ||L - L_fp32|| / ||L_fp32|| over the non-pad tokens. Also:
plain W8A8 (no outlier channel), a bf16 cast (for scale), an int8_scale threshold sweep, and the
worst layers' relative output error (each layer quantized alone, fed the fp32 model's inputs).
The int8 GEMM runs as a float64 matmul: exact (|sums| < 2^53), the same int32 result as
`torch._int_mm`, which is about 10x slower on CPUs without VNNI.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

from bench.common import command_line, environment, write_json
from bench.task import write_splits
from quaff_core.calibration.calibrate import DEFAULT_MAX_RATIO, calibrate
from quaff_core.data.jsonl import read_examples
from quaff_core.lm.tokenization import tokenize_examples
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.targets import as_linear, in_features, quantizable_linears
from quaff_core.training.prepare import calibration_batches

Batches = list[dict[str, torch.Tensor]]
Config = tuple[str, float | None, float]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def int8_everywhere() -> Any:
    """Every layer on the int8 GEMM, however narrow (`auto` sends narrow CPU layers to the
    dequant backend, which quantizes no activation): the maps are measured on the int8 path."""
    return mock.patch.dict("quaff_core.quant.plan.MIN_INT8_WIDTH", clear=True)


def exact_int8_mm(a: torch.Tensor, b: torch.Tensor, *_backend: object) -> torch.Tensor:
    """int8 [M, K] @ int8 [K, N] -> int32 [M, N] through float64 (exact for K < 2^38)."""
    return (a.double() @ b.double()).to(torch.int32)


def prompt_sets(tokenizer: Any, args: argparse.Namespace) -> dict[str, Batches]:
    """Padded batches (input_ids, attention_mask) of the calibration and held-out prompts."""
    sizes = {"train": args.calibration_examples, "test": args.task_examples}
    paths = write_splits(args.out, sizes, seed=0, shift_max=9)
    chat = read_examples(EXAMPLES / "chat.jsonl") + read_examples(EXAMPLES / "chat_valid.jsonl")
    sets = {"calibration": read_examples(paths["train"]), "held_task": read_examples(paths["test"])}
    pad = int(tokenizer.pad_token_id)
    out = {}
    for name, examples in {**sets, "held_chat": chat}.items():
        data = tokenize_examples(examples, tokenizer, max_seq_length=128)
        every = TrainConfig(calibration_examples=len(data), batch_size=8, max_seq_length=128)
        out[name] = list(calibration_batches(data, every, pad))
    return out


@torch.no_grad()
def logits_of(model: nn.Module, batches: Batches) -> list[torch.Tensor]:
    """Per batch: float32 logits of the non-pad tokens, [tokens, vocab]."""
    return [model(**b).logits.float()[b["attention_mask"].bool()] for b in batches]


def logits_error(
    model: nn.Module, sets: dict[str, Batches], refs: dict[str, Any]
) -> dict[str, float]:
    """Relative Frobenius error of `model`'s logits vs the fp32 ones, per prompt set."""
    errors = {}
    for name, batches in sets.items():
        got = logits_of(model, batches)
        diff = sum(float((g - r).square().sum()) for g, r in zip(got, refs[name], strict=True))
        errors[name] = (diff / sum(float(r.square().sum()) for r in refs[name])) ** 0.5
    return errors


def measure(
    base: nn.Module, sets: dict[str, Batches], refs: dict[str, Any], config: Config
) -> tuple[OutlierMap, dict[str, Any]]:
    """Calibrate by `config` (w8a8: no channel), convert a copy, measure: (map, JSON point)."""
    strategy, threshold, ratio = config
    if strategy == "w8a8":
        widths = {n: in_features(m) for n, m in quantizable_linears(base).items()}
        om = OutlierMap(layers={n: [] for n in widths}, in_features=widths)
    else:
        cal = sets["calibration"]
        om = calibrate(base, cal, strategy=strategy, threshold=threshold, max_ratio=ratio)
    fractions = [len(om.layers[n]) / om.in_features[n] for n in om.layers]
    return om, {
        "strategy": strategy,
        "threshold": om.threshold if strategy != "w8a8" else None,
        "max_ratio": ratio,
        "fraction": om.num_channels / sum(om.in_features.values()),
        "mean_layer_fraction": sum(fractions) / len(fractions),
        "logits_error": _int8_logits_error(convert_to_quaff(copy.deepcopy(base), om), sets, refs),
    }


def _int8_logits_error(
    model: nn.Module, sets: dict[str, Batches], refs: dict[str, Any]
) -> dict[str, float]:
    """`logits_error` with every layer on the int8 path."""
    with int8_everywhere():
        return logits_error(model, sets, refs)


def configurations(args: argparse.Namespace) -> list[Config]:
    """(strategy, threshold or None, max_ratio): w8a8, each rule at each ratio, the sweep."""
    configs: list[Config] = [("w8a8", None, 0.0)]
    for rule in args.rules.split(","):
        name, _, thr = rule.partition(":")
        configs += [(name, float(thr) if thr else None, float(r)) for r in args.ratios.split(",")]
    sweep = [float(t) for t in args.sweep.split(",") if t]
    return configs + [("int8_scale", t, DEFAULT_MAX_RATIO) for t in sweep]


@torch.no_grad()
def layer_errors(model: nn.Module, om: OutlierMap, batches: Batches) -> dict[str, float]:
    """Relative output error of every layer quantized alone on its fp32 inputs, worst first."""
    sums: dict[str, list[float]] = {}
    mask: list[torch.Tensor] = []

    def hook(name: str, quant: QuaffLinear) -> Any:
        def run(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            x, y = args[0][mask[0]], out[mask[0]]
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += float((quant(x) - y).square().sum())
            acc[1] += float(y.square().sum())

        return run

    handles = []
    for name, layer in quantizable_linears(model).items():
        quant = QuaffLinear.from_linear(as_linear(layer), om.channels(name) or []).eval()
        handles.append(layer.register_forward_hook(hook(name, quant)))
    try:
        with int8_everywhere():
            for b in batches:
                mask[:] = [b["attention_mask"].bool()]
                model(**b)
    finally:
        for h in handles:
            h.remove()
    errors = {n: (d / r) ** 0.5 for n, (d, r) in sums.items()}
    return dict(sorted(errors.items(), key=lambda kv: -kv[1]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--rules", default="mean_times:100,int8_scale", help="strategy[:threshold],...")
    p.add_argument("--ratios", default="0.0025,0.005,0.01,0.02,0.05", help="max_ratio values")
    p.add_argument("--sweep", default="0.25,4", help="int8_scale thresholds at the default ratio")
    p.add_argument("--calibration-examples", type=int, default=24)
    p.add_argument("--task-examples", type=int, default=16, help="held-out task prompts")
    p.add_argument("--worst-layers", type=int, default=6, help="printed per map")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("bench/out/calibration"))
    p.add_argument("--json", type=Path, default=Path("bench/results/calibration_curve.json"))
    return p.parse_args(argv)


def print_point(point: dict[str, Any], w8a8: dict[str, float]) -> None:
    """One line: rule, budget, fraction kept, error per prompt set (and x plain W8A8)."""
    cells = [
        f"{point['strategy']:<10} thr={point['threshold']!s:<5} max_ratio={point['max_ratio']}"
    ]
    cells.append(f"kept={100 * point['fraction']:.2f}%")
    cells += [f"{k} {e:.4f} ({e / w8a8[k]:.2f}x)" for k, e in point["logits_error"].items()]
    print("  ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Measure every configuration; print one line each; write the JSON record."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    base, tokenizer = load_base_model(args.model)
    sets = prompt_sets(tokenizer, args)
    refs = {name: logits_of(base.eval(), batches) for name, batches in sets.items()}
    tokens = {n: sum(int(b["attention_mask"].sum()) for b in bs) for n, bs in sets.items()}
    record: dict[str, Any] = {"command": command_line("bench.calibration_curve", argv)}
    record.update(environment=environment(args.threads), model=args.model, tokens=tokens)
    bf16 = nn.Module.to(copy.deepcopy(base), torch.bfloat16)
    record["bf16_logits_error"] = logits_error(bf16, sets, refs)
    print(f"tokens {tokens}; bf16 cast: {record['bf16_logits_error']}", flush=True)
    maps: dict[str, OutlierMap] = {}
    with mock.patch("quaff_core.quant.autograd.int8_mm", exact_int8_mm):
        for config in configurations(args):
            om, point = measure(base, sets, refs, config)
            record.setdefault("points", []).append(point)
            maps.setdefault(f"{config[0]}@{config[2]}", om)
            print_point(point, record["points"][0]["logits_error"])
        keys = ("w8a8@0.0", f"mean_times@{DEFAULT_MAX_RATIO}", f"int8_scale@{DEFAULT_MAX_RATIO}")
        record["layer_errors"] = {
            k: layer_errors(base, maps[k], sets["held_chat"]) for k in keys if k in maps
        }
    worst = {n for e in record["layer_errors"].values() for n in list(e)[: args.worst_layers]}
    print("layer relative output error (held_chat):", "  ".join(record["layer_errors"]))
    for name in sorted(worst, key=lambda n: -record["layer_errors"]["w8a8@0.0"][n]):
        print(f"  {name:<36}", "  ".join(f"{e[name]:.4f}" for e in record["layer_errors"].values()))
    write_json(args.json, record)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
