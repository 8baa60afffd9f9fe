"""The calibration curve's pieces: the exact GEMM stand-in, one measured point, layer errors."""

from __future__ import annotations

import argparse

import torch

from bench.calibration_curve import configurations, exact_int8_mm, layer_errors, logits_of, measure
from quaff_core.models.loading import load_tiny_llama
from quaff_core.quant.kernels import int8_mm


def test_exact_int8_mm_matches_the_int8_kernel_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (33, 1536), generator=gen, dtype=torch.int8)
    b = torch.randint(-127, 128, (1536, 40), generator=gen, dtype=torch.int8)
    a[0] = 127  # the largest possible sums: 1536 * 127^2
    b[:, 0] = 127
    assert torch.equal(exact_int8_mm(a, b), int8_mm(a, b))
    assert torch.equal(exact_int8_mm(a, b.t().contiguous().t()), int8_mm(a, b))


def test_configurations_cover_w8a8_each_rule_and_ratio_and_the_sweep() -> None:
    args = argparse.Namespace(rules="mean_times:100,int8_scale", ratios="0.01,0.02", sweep="4")
    assert configurations(args) == [
        ("w8a8", None, 0.0),
        ("mean_times", 100.0, 0.01),
        ("mean_times", 100.0, 0.02),
        ("int8_scale", None, 0.01),
        ("int8_scale", None, 0.02),
        ("int8_scale", 4.0, 0.01),
    ]


def test_measure_and_layer_errors_on_a_tiny_llama() -> None:
    model, _ = load_tiny_llama()
    ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    sets = {"calibration": [{"input_ids": ids, "attention_mask": mask}]}
    refs = {"calibration": logits_of(model.eval(), sets["calibration"])}
    om, w8a8 = measure(model, sets, refs, ("w8a8", None, 0.0))
    _, quaff = measure(model, sets, refs, ("top_abs", None, 0.05))
    assert w8a8["fraction"] == 0.0
    assert om.num_channels == 0
    assert 0.0 < quaff["fraction"] <= 0.05
    assert 0.0 < quaff["logits_error"]["calibration"] < w8a8["logits_error"]["calibration"] < 0.1
    errors = layer_errors(model, om, sets["calibration"])
    assert set(errors) == set(om.layers)
    assert list(errors.values()) == sorted(errors.values(), reverse=True)
    assert all(0.0 < e < 0.1 for e in errors.values())
