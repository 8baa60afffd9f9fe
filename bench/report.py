"""Write bench/RESULTS.md and the PNG figures from the JSON results of one `make bench` run.

    .venv/bin/python -m bench.report --results bench/results --out bench/RESULTS.md

Every number in RESULTS.md comes from bench/results/{speed,quality}.json (and speed_gpu.json when a
GPU run exists); targets are the paper's claims as stated in the benchmark issue.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEED_TARGET = 1.73  # x lower step latency than fp32 LoRA
MEMORY_TARGET = 0.30  # fraction less memory than fp32 LoRA
LOSS_TOLERANCE = 0.02  # relative, final validation loss vs fp32
EM_TOLERANCE = 2.0  # points of exact match vs fp32
RECALL_TARGET = 0.90  # our reading of "keep their positions": recall of the initial map
QUAFF_MODES = ("quaff-fp32", "quaff-bf16")


@dataclass(frozen=True)
class Verdict:
    """One claim checked: what was targeted, what was measured, met or not and by how much."""

    claim: str
    target: str
    measured: str
    met: bool
    gap: str = ""

    def row(self) -> str:
        """A markdown table row."""
        status = "**met**" if self.met else f"**missed** ({self.gap})"
        return f"| {self.claim} | {self.target} | {self.measured} | {status} |"


def models_of(shape_data: dict[str, Any]) -> list[str]:
    """Model keys of one bench.step JSON (all but config/command)."""
    return [k for k, v in shape_data.items() if isinstance(v, dict) and k != "config"]


def _best_quaff(records: dict[str, Any], key: str, *, higher: bool) -> tuple[str, float] | None:
    """(mode, value) of the Quaff mode with the best `key`."""
    found = [(m, records[m][key]) for m in QUAFF_MODES if records.get(m, {}).get(key) is not None]
    if not found:
        return None
    return max(found, key=lambda mv: mv[1] if higher else -mv[1])


def speed_verdicts(speed: dict[str, Any]) -> list[Verdict]:
    """Step-latency and memory claims, per shape and model (best Quaff mode)."""
    out: list[Verdict] = []
    for shape, data in speed.get("shapes", {}).items():
        for model in models_of(data):
            recs = data[model]
            fast = _best_quaff(recs, "speedup_vs_fp32", higher=True)
            if fast is not None:
                mode, ratio = fast
                out.append(
                    Verdict(
                        f"step latency, {model} {shape}",
                        f">= {SPEED_TARGET:.2f}x faster than fp32 LoRA",
                        f"{ratio:.2f}x ({mode})",
                        ratio >= SPEED_TARGET,
                        f"{SPEED_TARGET - ratio:.2f}x short, {ratio / SPEED_TARGET:.0%} of target",
                    )
                )
            small = _best_quaff(recs, "net_peak_vs_fp32", higher=False)
            if small is not None:
                mode, ratio = small
                saved = 1.0 - ratio
                change = f"{saved:.0%} less" if saved >= 0 else f"{-saved:.0%} more"
                out.append(
                    Verdict(
                        f"peak memory, {model} {shape}",
                        f">= {MEMORY_TARGET:.0%} less than fp32 LoRA",
                        f"{change} ({mode}, {ratio:.2f}x of fp32)",
                        saved >= MEMORY_TARGET,
                        f"{(MEMORY_TARGET - saved) * 100:.0f} points short",
                    )
                )
    return out


def quality_verdicts(quality: dict[str, Any]) -> list[Verdict]:
    """Validation-loss, exact-match, W8A8-ablation and outlier-stability claims."""
    modes = quality.get("modes", {})
    out: list[Verdict] = []
    fp32, quaff, w8a8 = modes.get("fp32"), modes.get("quaff"), modes.get("w8a8")
    if fp32 and quaff:
        rel = quaff["final_valid_loss"] / fp32["final_valid_loss"] - 1.0
        out.append(
            Verdict(
                "final validation loss vs fp32",
                f"within {LOSS_TOLERANCE:.0%} of fp32",
                f"{quaff['final_valid_loss']:.4f} vs {fp32['final_valid_loss']:.4f} ({rel:+.2%})",
                rel <= LOSS_TOLERANCE,
                f"{(rel - LOSS_TOLERANCE) * 100:.2f} points over",
            )
        )
        if "exact_match" in quaff and "exact_match" in fp32:
            diff = (quaff["exact_match"] - fp32["exact_match"]) * 100
            out.append(
                Verdict(
                    "test exact match vs fp32",
                    f"within {EM_TOLERANCE:.0f} points of fp32",
                    f"{quaff['exact_match']:.1%} vs {fp32['exact_match']:.1%} ({diff:+.1f} pts)",
                    diff >= -EM_TOLERANCE,
                    f"{-diff - EM_TOLERANCE:.1f} points beyond",
                )
            )
    if quaff and w8a8:
        loss_ok = quaff["final_valid_loss"] <= w8a8["final_valid_loss"]
        em_ok = quaff.get("exact_match", 0.0) >= w8a8.get("exact_match", 0.0)
        worse = [
            *(["loss"] if not loss_ok else []),
            *(["exact match"] if not em_ok else []),
        ]
        out.append(
            Verdict(
                "no worse than plain W8A8",
                "loss <= W8A8 and exact match >= W8A8",
                f"loss {quaff['final_valid_loss']:.4f} vs {w8a8['final_valid_loss']:.4f}; "
                f"EM {quaff.get('exact_match', 0):.1%} vs {w8a8.get('exact_match', 0):.1%}",
                loss_ok and em_ok,
                "worse on " + " and ".join(worse),
            )
        )
    stability = (quaff or {}).get("stability", {})
    points = stability.get("points", [])
    if points and not stability.get("initial_channels"):
        out.append(
            Verdict(
                "outlier channels keep their positions",
                f"overall recall of the initial map >= {RECALL_TARGET:.0%} (our threshold)",
                "calibration found no outlier channels",
                False,
                "nothing to measure",
            )
        )
    elif points:
        last = points[-1]
        worst = min(p["overall"] for p in points)
        out.append(
            Verdict(
                "outlier channels keep their positions",
                f"overall recall of the initial map >= {RECALL_TARGET:.0%} (our threshold)",
                f"{last['overall']:.1%} at step {last['step']} (lowest {worst:.1%})",
                last["overall"] >= RECALL_TARGET,
                f"{(RECALL_TARGET - last['overall']) * 100:.1f} points below",
            )
        )
    return out


def load_results(folder: Path) -> dict[str, Any]:
    """The JSON files present in `folder`: speed, quality, speed_gpu, scaling (each optional)."""
    found: dict[str, Any] = {}
    for name in ("speed", "quality", "speed_gpu", "scaling"):
        path = folder / f"{name}.json"
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
    extra = sorted(folder.glob("quality_seed*.json"))
    if extra:
        found["quality_seeds"] = [json.loads(p.read_text(encoding="utf-8")) for p in extra]
    return found


def main(argv: list[str] | None = None) -> None:
    """Render the figures and RESULTS.md."""
    from bench.report_md import readme_section, render, replace_section

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("bench/results"))
    p.add_argument("--out", type=Path, default=Path("bench/RESULTS.md"))
    p.add_argument("--readme", type=Path, help="also rewrite this README's Benchmarks section")
    p.add_argument("--note", action="append", default=[], help="a line for the notes section")
    args = p.parse_args(argv)
    results = load_results(args.results)
    if not results:
        raise SystemExit(f"no results JSON in {args.results}: run `make bench` first")
    text = render(results, args.results, args.out.parent, notes=args.note)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    if args.readme:
        link = os.path.relpath(args.out, args.readme.parent)
        section = readme_section(results, Path(link).as_posix())
        old = args.readme.read_text(encoding="utf-8")
        args.readme.write_text(replace_section(old, "## Benchmarks", section), encoding="utf-8")
        print(f"updated the Benchmarks section of {args.readme}")


if __name__ == "__main__":
    main()
