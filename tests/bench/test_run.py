"""The `make bench` driver's stages and the speed driver's shape flag."""

from __future__ import annotations

import argparse

import pytest

from bench.run import parse_args, stage_commands
from bench.speed import parse_shape


def test_full_run_has_speed_quality_then_report() -> None:
    stages = stage_commands(parse_args([]))
    assert [name for name, _ in stages] == ["speed", "quality", "report"]
    assert "--quick" not in stages[0][1]


def test_quick_and_extra_args_are_passed_last() -> None:
    stages = dict(stage_commands(parse_args(["--quick", "--quality-args", "--steps 7"])))
    assert stages["quality"][-2:] == ["--steps", "7"]
    assert "--steps" in stages["speed"]
    assert "4x256" in stages["speed"]


def test_skips_keep_the_report() -> None:
    stages = stage_commands(parse_args(["--skip-speed", "--skip-quality"]))
    assert [name for name, _ in stages] == ["report"]


def test_parse_shape() -> None:
    assert parse_shape("4x256") == (4, 256)
    assert parse_shape("1X1024") == (1, 1024)
    for bad in ("4", "x256", "0x10", "4x1", "ax2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shape(bad)
