"""convert_to_quaff on a tiny Llama; momentum-state checkpoint helpers."""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING

import pytest
import torch
from torch import nn

from quaff_core.calibration.calibrate import calibrate
from quaff_core.quant.convert import convert_to_quaff, load_quaff_state_dict, quaff_state_dict
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.outlier_map import OutlierMap
from tests.quaff_core.conftest import QUAFF_DEVICES

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedModel


def ids(batch: int = 2, seq: int = 24, seed: int = 0) -> torch.Tensor:
    """Random token ids for the tiny Llama (vocab 512)."""
    return torch.randint(0, 512, (batch, seq), generator=torch.Generator().manual_seed(seed))


def linear_weight_bytes(model: PreTrainedModel) -> int:
    """Bytes held by linear layers (all buffers and parameters) except the output head."""
    head = model.get_output_embeddings()
    total = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, QuaffLinear)) and module is not head:
            tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


@pytest.mark.parametrize("device", QUAFF_DEVICES)
def test_tiny_llama_logits_close_and_small(tiny_llama: LlamaForCausalLM, device: str) -> None:
    model = tiny_llama.to(device)  # type: ignore[arg-type]  # transformers' @wraps(nn.Module.to)
    reference = copy.deepcopy(model)
    fp32_bytes = linear_weight_bytes(reference)
    batches = [ids(seed=s).to(device) for s in range(2)]
    om = calibrate(model, batches, strategy="top_abs", max_ratio=0.02)
    assert om.num_channels > 0
    convert_to_quaff(model, om)
    x = ids(seed=7).to(device)
    with torch.no_grad():
        expected = reference(x).logits
        got = model(x).logits
    rel = float((got - expected).norm() / expected.norm())
    logging.getLogger(__name__).info("tiny Llama logits relative error: %.4f", rel)
    assert rel <= 0.03
    assert linear_weight_bytes(model) <= 0.30 * fp32_bytes
    n_quaff = sum(isinstance(m, QuaffLinear) for m in model.modules())
    assert n_quaff == 2 * 7
    assert isinstance(model.lm_head, nn.Linear)
    assert not any(isinstance(m, nn.Linear) and m is not model.lm_head for m in model.modules())


def test_outlier_columns_come_from_the_map(tiny_llama: LlamaForCausalLM) -> None:
    layer = "model.layers.0.mlp.down_proj"
    linear = tiny_llama.get_submodule(layer)
    assert isinstance(linear, nn.Linear)
    original = linear.weight.detach().clone()
    om = OutlierMap(layers={layer: [3, 100]})
    convert_to_quaff(tiny_llama, om, scale_beta=0.25, compute_dtype=torch.bfloat16)
    quaff = tiny_llama.get_submodule(layer)
    assert isinstance(quaff, QuaffLinear)
    assert quaff.outlier_idx.tolist() == [3, 100]
    torch.testing.assert_close(quaff.outlier_weight, original[:, [3, 100]])
    assert quaff.scale_beta == 0.25
    assert quaff.compute_dtype == torch.bfloat16


def test_missing_layers_warn_once(
    tiny_llama: LlamaForCausalLM, caplog: pytest.LogCaptureFixture
) -> None:
    om = OutlierMap(layers={"model.layers.0.mlp.down_proj": [1]})
    with caplog.at_level(logging.WARNING, logger="quaff_core.quant.convert"):
        convert_to_quaff(tiny_llama, om)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "13 layer(s)" in warnings[0].getMessage()
    assert "model.layers.1.self_attn.q_proj" in warnings[0].getMessage()
    assert tiny_llama.get_submodule("model.layers.1.self_attn.q_proj").n_outliers == 0


def test_momentum_state_round_trip(tiny_llama: LlamaForCausalLM) -> None:
    om = OutlierMap(layers={"model.layers.0.mlp.down_proj": [1, 2]})
    convert_to_quaff(tiny_llama, om)
    tiny_llama.train()
    tiny_llama(ids())
    state = quaff_state_dict(tiny_llama)
    assert len(state) == 3 * 14  # scale, initialized, skipped
    key = "model.layers.0.mlp.down_proj.outlier_scale"
    assert state[key].shape == (2,)
    assert bool(state["model.layers.0.mlp.down_proj.outlier_scale_initialized"])
    layer = tiny_llama.get_submodule("model.layers.0.mlp.down_proj")
    assert isinstance(layer, QuaffLinear)
    saved = layer.outlier_scale.clone()
    tiny_llama(ids(seed=3) % 7)  # moves the momentum scale
    load_quaff_state_dict(tiny_llama, state)
    torch.testing.assert_close(layer.outlier_scale, saved)


def test_load_quaff_state_without_skip_counts(tiny_llama: LlamaForCausalLM) -> None:
    # files written before the skip counter existed still load, with zero skips
    convert_to_quaff(tiny_llama, OutlierMap(layers={"model.layers.0.mlp.down_proj": [1]}))
    layer = tiny_llama.get_submodule("model.layers.0.mlp.down_proj")
    assert isinstance(layer, QuaffLinear)
    layer.outlier_scale_skipped.fill_(5)
    state = {k: v for k, v in quaff_state_dict(tiny_llama).items() if "skipped" not in k}
    load_quaff_state_dict(tiny_llama, state)
    assert int(layer.outlier_scale_skipped) == 0


def test_load_quaff_state_rejects_non_finite_scales(tiny_llama: LlamaForCausalLM) -> None:
    convert_to_quaff(tiny_llama, OutlierMap(layers={"model.layers.0.mlp.down_proj": [1]}))
    state = quaff_state_dict(tiny_llama)
    state["model.layers.0.mlp.down_proj.outlier_scale"] = torch.tensor([float("nan")])
    with pytest.raises(ValueError, match=r"down_proj\.outlier_scale holds non-finite"):
        load_quaff_state_dict(tiny_llama, state)


def test_load_quaff_state_is_strict(tiny_llama: LlamaForCausalLM) -> None:
    convert_to_quaff(tiny_llama, OutlierMap(layers={}))
    state = quaff_state_dict(tiny_llama)
    state.pop("model.layers.0.mlp.up_proj.outlier_scale")
    state["model.layers.9.mlp.up_proj.outlier_scale"] = torch.ones(0)
    with pytest.raises(ValueError, match=r"missing keys.*layers\.0\.mlp\.up_proj.*unexpected"):
        load_quaff_state_dict(tiny_llama, state)


def test_rejects_non_map(tiny_llama: LlamaForCausalLM) -> None:
    with pytest.raises(TypeError, match="OutlierMap"):
        convert_to_quaff(tiny_llama, {"layers": {}})  # type: ignore[arg-type]
