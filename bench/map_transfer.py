"""One outlier map per base: does a map calibrated on other data serve a job as well as its own?

    .venv/bin/python -m bench.map_transfer --json bench/results/map_transfer.json

SmolLM2-135M-Instruct, real activations, fp32 reference. Three maps: the job's own (calibrated on
the bench task's training prompts, as `calibration_data: job` does), the base's (calibrated on
the general chat set that ships with Quaff, as the default `calibration_data: base` does), and
none (plain W8A8). Each converts a copy of the model; the logits relative error
||L - L_fp32|| / ||L_fp32|| over non-pad tokens is measured on the task's calibration prompts,
held-out task prompts and held-out chat prompts (examples/chat*.jsonl). Every layer runs the
int8 GEMM (`int8_everywhere`: no narrow layer sent to the dequant backend) in float32 compute,
so only the map differs between rows.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import torch

from bench.calibration_curve import int8_everywhere, logits_error, logits_of, prompt_sets
from bench.common import command_line, environment, write_json
from quaff_core.calibration.calibrate import calibrate
from quaff_core.models.loading import load_base_model
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.targets import in_features, quantizable_linears
from quaff_core.training.prepare import calibration_batches, general_calibration_set


def maps(base: torch.nn.Module, tokenizer: Any, task: list[Any]) -> dict[str, OutlierMap]:
    """The job's map (task prompts), the base's map (general chat set) and no map (W8A8)."""
    config, general = general_calibration_set(TrainConfig(batch_size=8), tokenizer)
    pad = int(tokenizer.pad_token_id)
    widths = {n: in_features(m) for n, m in quantizable_linears(base).items()}
    general_batches = calibration_batches(general, config, pad)
    return {
        "job map (task prompts)": calibrate(
            base,
            task,
            strategy=config.outlier_strategy,
            threshold=config.outlier_threshold,
            max_ratio=config.outlier_max_ratio,
        ),
        "base map (general chat set)": calibrate(
            base,
            general_batches,
            strategy=config.outlier_strategy,
            threshold=config.outlier_threshold,
            max_ratio=config.outlier_max_ratio,
        ),
        "no map (plain W8A8)": OutlierMap(layers={n: [] for n in widths}, in_features=widths),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure each map on each prompt set; print the table; write the JSON record."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--calibration-examples", type=int, default=64)
    p.add_argument("--task-examples", type=int, default=32, help="held-out task prompts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench/out/map_transfer"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base, tokenizer = load_base_model(args.model)
    sets = prompt_sets(tokenizer, args)
    refs = {name: logits_of(base.eval(), batches) for name, batches in sets.items()}
    rows: dict[str, dict[str, Any]] = {}
    with int8_everywhere():
        for name, om in maps(base, tokenizer, sets["calibration"]).items():
            model = convert_to_quaff(copy.deepcopy(base), om, compute_dtype=torch.float32)
            rows[name] = {"channels": om.num_channels, **logits_error(model, sets, refs)}
            print(name, rows[name], flush=True)
    record = {
        "command": command_line("bench.map_transfer", argv),
        "environment": environment(args.threads),
        "model": args.model,
        "logits_error": rows,
    }
    print(f"\nhost: {record['environment']['device']}")
    print("| map | channels | task calibration prompts | held-out task | held-out chat |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['channels']} | {row['calibration']:.4f} | "
              f"{row['held_task']:.4f} | {row['held_chat']:.4f} |")  # fmt: skip
    if args.json:
        write_json(args.json, record)
    return record


if __name__ == "__main__":
    main()
