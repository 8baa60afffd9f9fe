"""The `make bench` driver's stages and the speed driver's shape flag."""

from __future__ import annotations

import argparse

import pytest

from bench.run import parse_args, stage_commands
from bench.speed import matmul_component, parse_shape


def test_full_run_has_speed_then_quality() -> None:
    stages = stage_commands(parse_args([]))
    assert [name for name, _ in stages] == ["speed", "quality"]
    assert "--quick" not in stages[0][1]


def test_quick_and_extra_args_are_passed_last() -> None:
    stages = dict(stage_commands(parse_args(["--quick", "--quality-args", "--steps 7"])))
    assert stages["quality"][-2:] == ["--steps", "7"]
    assert "--steps" in stages["speed"]
    assert "4x256" in stages["speed"]


def test_skips_leave_the_other_stage() -> None:
    stages = stage_commands(parse_args(["--skip-speed"]))
    assert [name for name, _ in stages] == ["quality"]
    assert "--seeds" not in stages[0][1]  # the full run's three seeds


def test_parse_shape() -> None:
    assert parse_shape("4x256") == (4, 256)
    assert parse_shape("1X1024") == (1, 1024)
    for bad in ("4", "x256", "0x10", "4x1", "ax2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_shape(bad)


def test_matmul_component_names_the_layer_from_shapes() -> None:
    vocab, r = 49152, 16
    assert matmul_component("aten::_int_mm", [[1024, 576], [576, 1536]], vocab, r).startswith(
        "int8"
    )
    assert matmul_component("aten::mm", [[1024, 576], [576, 49152]], vocab, r).startswith("output")
    assert matmul_component("aten::mm", [[1024, 576], [576, 16]], vocab, r).startswith("LoRA")
    assert matmul_component("aten::bmm", [[36, 256, 64], [36, 64, 256]], vocab, r) == "attention"
    assert matmul_component("aten::mm", [[1024, 5], [5, 576]], vocab, r).startswith("small")
    assert matmul_component("aten::mm", [[1024, 576], [576, 576]], vocab, r) == "other fp matmuls"
