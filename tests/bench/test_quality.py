"""The quality benchmark: one TrainConfig for every mode, mean and spread over seeds, targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.quality import main, parse_args, summary, train_config


def test_modes_share_every_hyperparameter_but_quantization() -> None:
    args = parse_args([])
    configs = {mode: train_config(args, mode, 42).to_dict() for mode in ("fp32", "quaff", "w8a8")}
    assert configs["fp32"]["quantization"] == "none"
    assert configs["quaff"]["quantization"] == configs["w8a8"]["quantization"] == "quaff"
    for config in configs.values():
        config.pop("quantization")
    assert configs["fp32"] == configs["quaff"] == configs["w8a8"]
    assert train_config(args, "fp32", 43).seed == 43


def _runs(losses: dict[str, list[float]], matches: dict[str, list[float]]) -> dict[str, list]:
    return {
        mode: [
            {"final_valid_loss": v, "exact_match": m}
            for v, m in zip(vs, matches[mode], strict=True)
        ]
        for mode, vs in losses.items()
    }


def test_summary_gives_mean_spread_and_target_verdicts() -> None:
    stats = summary(
        _runs(
            {"fp32": [1.00, 1.02], "quaff": [1.005, 1.015], "w8a8": [1.10, 1.12]},
            {"fp32": [0.5, 0.6], "quaff": [0.6, 0.6], "w8a8": [0.4, 0.5]},
        )
    )
    quaff = stats["modes"]["quaff"]
    assert quaff["valid_loss_mean"] == pytest.approx(1.01)
    assert quaff["valid_loss_spread"] == pytest.approx(0.01)
    assert stats["modes"]["w8a8"]["valid_loss_spread"] == pytest.approx(0.02)
    targets = stats["targets"]
    assert targets["quaff_over_fp32"] == pytest.approx(0.0)
    assert targets["quaff_within_1pct_of_fp32"] is True
    assert targets["quaff_below_w8a8_by"] == pytest.approx(0.1)
    assert targets["quaff_beats_w8a8_beyond_spread"] is True
    assert targets["exact_match_not_below_fp32"] is True


def test_summary_compares_the_base_map_with_the_job_map() -> None:
    policy = summary(
        _runs(
            {"quaff": [1.00, 1.02], "quaff-base": [1.01, 1.04]},
            {"quaff": [0.5, 0.5], "quaff-base": [0.5, 0.6]},
        )
    )["map_policy"]
    assert policy["base_map_over_own_map"] == pytest.approx(0.015 / 1.01)
    assert policy["larger_seed_spread"] == pytest.approx(0.03)
    assert policy["exact_match_difference"] == pytest.approx(0.05)


def test_summary_reports_a_missed_target() -> None:
    targets = summary(
        _runs(
            {"fp32": [1.0, 1.0], "quaff": [1.05, 1.07], "w8a8": [1.06, 1.10]},
            {"fp32": [0.6, 0.6], "quaff": [0.5, 0.5], "w8a8": [0.5, 0.5]},
        )
    )["targets"]
    assert targets["quaff_over_fp32"] == pytest.approx(0.06)
    assert targets["quaff_within_1pct_of_fp32"] is False
    assert targets["quaff_beats_w8a8_beyond_spread"] is False  # margin 0.02 < spread 0.04
    assert targets["exact_match_not_below_fp32"] is False


@pytest.mark.slow
def test_a_tiny_run_trains_scores_and_records_stability(tmp_path: Path) -> None:
    out = tmp_path / "quality.json"
    record = main(
        ["--model", "tiny-llama", "--seeds", "1,2", "--steps", "4", "--eval-every", "2",
         "--batch", "4", "--train-examples", "32", "--valid-examples", "8", "--test", "4",
         "--calibration-examples", "8", "--max-seq-len", "512",
         "--out", str(tmp_path / "out"), "--json", str(out)]
    )  # fmt: skip
    assert out.is_file()
    runs = record["runs"]
    assert {m: [r["seed"] for r in rows] for m, rows in runs.items()} == {
        "fp32": [1, 2], "quaff": [1, 2], "quaff-base": [1, 2], "w8a8": [1, 2],
    }  # fmt: skip
    assert runs["w8a8"][0]["outlier_channels"] == 0
    assert runs["quaff"][0]["outlier_channels"] > 0
    assert runs["quaff-base"][0]["outlier_channels"] > 0  # the base's map: the general chat set
    assert [p["step"] for p in runs["quaff"][0]["stability"]] == [2, 4]
    assert runs["fp32"][0]["stability"] == []
    assert set(record["summary"]["targets"]) >= {"quaff_over_fp32", "larger_seed_spread"}
    assert set(record["summary"]["map_policy"]) >= {"base_map_over_own_map", "larger_seed_spread"}
