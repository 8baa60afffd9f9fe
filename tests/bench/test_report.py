"""RESULTS.md and figures from results JSON: verdicts against the paper's targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import main, quality_verdicts, speed_verdicts
from bench.report_md import replace_section

ENV = {"torch": "2.13.0+cpu", "threads": 2, "device": "cpu: test CPU, 2 cores", "python": "3.11"}


def step_record(seconds: float, net: float, fp32_s: float, fp32_net: float) -> dict[str, Any]:
    return {
        "median_step_s": seconds,
        "speedup_vs_fp32": fp32_s / seconds,
        "speedup_vs_bf16_autocast": None,
        "peak_rss_mib": net + 300,
        "net_peak_mib": net,
        "net_peak_vs_fp32": net / fp32_net,
        "includes": "what it runs",
    }


def speed_json() -> dict[str, Any]:
    modes = {
        "fp32": step_record(4.0, 2000, 4.0, 2000),
        "quaff-fp32": step_record(3.0, 1500, 4.0, 2000),  # 1.33x, 25% less
        "quaff-bf16": step_record(2.0, 1600, 4.0, 2000),  # 2.00x, 20% less
        "w8a8-bf16": step_record(1.9, 1600, 4.0, 2000),
    }
    shape = {"config": {"batch": "4", "seq_len": "256", "threads": "2", "layers": "2"}}
    return {
        "command": ".venv/bin/python -m bench.speed",
        "environment": ENV,
        "steps": 5,
        "warmup": 1,
        "shapes": {"4x256": {**shape, "smollm2": modes, "command": "python -m bench.step"}},
        "profiles": [
            {
                "mode": "quaff-bf16",
                "model": "smollm2",
                "batch": 4,
                "seq_len": 256,
                "total_self_cpu_ms": 100.0,
                "ops": [
                    {"name": "aten::mm", "self_cpu_ms": 60.0, "share": 0.6, "calls": 10},
                    {"name": "aten::_int_mm", "self_cpu_ms": 20.0, "share": 0.2, "calls": 5},
                    {"name": "aten::copy_", "self_cpu_ms": 10.0, "share": 0.1, "calls": 50},
                ],
                "matmul_share_by_component": {"output head": 0.45, "int8 base GEMMs": 0.2},
            }
        ],
    }


def mode(loss: float, em: float, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "final_valid_loss": loss,
        "exact_match": em,
        "train_seconds": 10.0,
        "train_curve": [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": loss}],
        "valid_curve": [{"step": 2, "valid_loss": loss, "valid_token_accuracy": 0.5}],
        "wrong": [{"prediction": "2023-07-15", "answer": "2023-07-14"}],
    }


def quality_json() -> dict[str, Any]:
    quaff = mode(0.101, 0.95, "Quaff")
    quaff["stability"] = {
        "every": 2,
        "calibration_examples": 8,
        "initial_channels": 10,
        "points": [
            {"step": 0, "overall": 1.0, "per_layer": {"a": 1.0, "b": 1.0}, "channels": 10},
            {"step": 2, "overall": 0.8, "per_layer": {"a": 0.6, "b": 1, "c": 1}, "channels": 11},
        ],
    }
    quaff["initial_map"] = {"layers": {"a": [1, 2, 3, 4, 5], "b": [7] * 5, "c": []}}  # c: none
    return {
        "command": ".venv/bin/python -m bench.quality",
        "environment": ENV,
        "config": {"model": "m", "batch": 8, "steps": 2, "lr": 0.001, "seed": 42},
        "train_config": {"lora_r": 16, "lora_alpha": 32},
        "task": {"generator": "bench/task.py", "sizes": {"train": 4}, "seed": 0},
        "modes": {
            "fp32": mode(0.100, 0.98, "fp32"),
            "quaff": quaff,
            "w8a8": mode(0.120, 0.90, "W8A8"),
        },
        "base_exact_match": {"exact_match": 0.0, "n_test": 100},
    }


def test_speed_verdicts_take_the_best_quaff_mode_per_claim() -> None:
    latency, memory = speed_verdicts(speed_json())
    assert latency.measured == "2.00x (quaff-bf16)"
    assert latency.met
    assert memory.measured.startswith("25% less (quaff-fp32")
    assert not memory.met
    assert memory.gap == "5 points short"


def test_memory_growth_is_reported_as_more() -> None:
    data = speed_json()
    for name in ("quaff-fp32", "quaff-bf16"):
        data["shapes"]["4x256"]["smollm2"][name]["net_peak_vs_fp32"] = 1.25
    _, memory = speed_verdicts(data)
    assert memory.measured.startswith("25% more (quaff-fp32, 1.25x of fp32)")
    assert memory.gap == "55 points short"


def test_stability_without_outlier_channels_is_not_met() -> None:
    data = quality_json()
    data["modes"]["quaff"]["stability"]["initial_channels"] = 0
    stability = quality_verdicts(data)[-1]
    assert not stability.met
    assert stability.measured == "calibration found no outlier channels"


def test_quality_verdicts_compare_with_fp32_w8a8_and_the_recall_target() -> None:
    loss, em, ablation, stability = quality_verdicts(quality_json())
    assert loss.met
    assert "+1.00%" in loss.measured
    assert not em.met
    assert "-3.0 pts" in em.measured
    assert em.gap == "1.0 points beyond"
    assert ablation.met
    assert not stability.met
    assert stability.gap == "10.0 points below"


def test_report_writes_results_md_and_figures(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "speed.json").write_text(json.dumps(speed_json()))
    (results / "quality.json").write_text(json.dumps(quality_json()))
    out = tmp_path / "RESULTS.md"
    main(["--results", str(results), "--out", str(out), "--note", "Ran in two parts."])
    text = out.read_text()
    assert text.endswith("- Ran in two parts.\n")
    assert "| step latency, smollm2 4x256 | >= 1.73x faster than fp32 LoRA | 2.00x" in text
    assert "**missed** (5 points short)" in text
    assert "No GPU table" in text
    assert "Largest remaining costs in a `quaff-bf16` step (smollm2, profiled)" in text
    assert "by part of the step: output head 45%; int8 base GEMMs 20%; element-wise" in text
    assert "(largest single operator: `aten::mm`, 60%" in text
    assert "| quaff: Quaff | - | 0.1010 | +1.00% | 95.0% | 10 |" in text
    assert "| 2 | 80.0% | 60% (`a`) | 1 of 2 | 11 |" in text
    for png in ("speed_4x256.png", "loss_curves.png", "outlier_recall.png"):
        assert (results / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](results/{png})" in text


def test_other_training_seeds_get_a_table_and_a_pooled_ratio(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "quality.json").write_text(json.dumps(quality_json()))
    other = quality_json()
    other["config"]["seed"] = 43
    other["modes"]["quaff"]["final_valid_loss"] = 0.099
    (results / "quality_seed43.json").write_text(json.dumps(other))
    out = tmp_path / "RESULTS.md"
    main(["--results", str(results), "--out", str(out)])
    text = out.read_text()
    assert "| 43 | 0.1000 | 98.0% | 0.0990 | 95.0% | 0.1200 | 90.0% |" in text
    assert "| mean | 0.1000 | 98.0% | 0.1000 | 95.0% | 0.1200 | 90.0% |" in text
    assert "Quaff vs fp32 final validation loss over all seeds: +0.00%." in text


def test_readme_section_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "quality.json").write_text(json.dumps(quality_json()))
    readme = tmp_path / "README.md"
    readme.write_text("# Q\n\n## Benchmarks\n\n_Not yet built._\n\n## Development\n\n- x\n")
    out = tmp_path / "bench" / "RESULTS.md"
    main(["--results", str(results), "--out", str(out), "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith("# Q\n\n## Benchmarks\n")
    assert text.endswith("\n\n## Development\n\n- x\n")
    assert "_Not yet built._" not in text
    assert "[bench/RESULTS.md](bench/RESULTS.md)" in text
    assert "| test exact match vs fp32 | within 2 points of fp32 |" in text


def test_replace_section_needs_the_heading() -> None:
    assert replace_section("a\n## B\nold\n", "## B", "## B\nnew\n") == "a\n## B\nnew\n\n"
    with pytest.raises(ValueError, match="no '## C' section"):
        replace_section("a\n## B\n", "## C", "x")


def test_readme_section_adds_the_bf16_baseline_and_seed_gaps(tmp_path: Path) -> None:
    from bench.report_md import readme_section

    speed = speed_json()
    recs = speed["shapes"]["4x256"]["smollm2"]
    recs["bf16-autocast"] = step_record(2.5, 1900, 4.0, 2000)
    for rec in recs.values():
        rec["speedup_vs_bf16_autocast"] = 2.5 / rec["median_step_s"]
    other = quality_json()
    other["config"]["seed"] = 43
    text = readme_section(
        {"speed": speed, "quality": quality_json(), "quality_seeds": [other]}, "bench/RESULTS.md"
    )
    assert "Quaff bf16 is only 1.25x to 1.25x faster" in text
    assert "plain W8A8 (no outlier channels) takes 0.95x to 0.95x" in text
    assert "Over 2 training seeds the Quaff/fp32 final-loss gap is +1.00%" in text
    assert "differs by at most 3.0 points per seed" in text
