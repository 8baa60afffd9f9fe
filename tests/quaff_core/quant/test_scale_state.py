"""The outlier-scale state of QuaffLinear: robust updates, beta semantics, pad mask, recompute."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, TypedDict, Unpack

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from quaff_core.quant.convert import convert_to_quaff, quaff_state_dict
from quaff_core.quant.linear import QuaffLinear
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.scale_state import check_scale_beta, token_mask, track_token_mask

from .test_linear import planted

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM


class LayerOptions(TypedDict, total=False):
    """The `QuaffLinear.from_linear` options the tests vary."""

    scale_beta: float
    momentum: float | None
    compute_dtype: torch.dtype | None


def trained_layer(**kwargs: Unpack[LayerOptions]) -> tuple[QuaffLinear, torch.Tensor, list[int]]:
    """A training-mode QuaffLinear 64 -> 16 with 2 outlier channels, and a planted input; float32
    compute unless asked, so the scale statistic is exactly `fresh_scale`'s."""
    x, channels = planted((32,), 64, 2)
    torch.manual_seed(1)
    kwargs.setdefault("compute_dtype", torch.float32)
    quaff = QuaffLinear.from_linear(nn.Linear(64, 16), channels, **kwargs)
    return quaff.train(), x, channels


def fresh_scale(quaff: QuaffLinear, x: torch.Tensor, channels: list[int]) -> torch.Tensor:
    """max(1, sqrt(max|X_o| / max|W_o|)) of x, float32 [n_o]."""
    w_max = quaff.outlier_weight.abs().amax(0)
    return (x[..., channels].abs().reshape(-1, len(channels)).amax(0) / w_max).sqrt().clamp_min(1)


def test_nan_batch_leaves_later_batches_and_state_finite() -> None:
    quaff, x, _ = trained_layer()
    quaff(x)
    before = quaff.outlier_scale.clone()
    poisoned = x.clone()
    poisoned[3, quaff.outlier_idx[0]] = float("nan")
    poisoned[5, quaff.outlier_idx[1]] = float("inf")
    quaff(poisoned)
    torch.testing.assert_close(quaff.outlier_scale, before)  # the update was skipped
    assert int(quaff.outlier_scale_skipped) == 1
    assert bool(torch.isfinite(quaff(x)).all())
    quaff.eval()
    assert bool(torch.isfinite(quaff(x)).all())
    assert all(bool(torch.isfinite(v.float()).all()) for v in quaff.state_dict().values())


def test_zero_statistic_is_skipped_per_channel() -> None:
    quaff, x, channels = trained_layer()
    quaff(x)
    before = quaff.outlier_scale.clone()
    dead = x * 3.0
    dead[:, channels[0]] = 0.0
    quaff(dead)
    assert quaff.outlier_scale[0] == before[0]  # zero statistic: kept
    assert quaff.outlier_scale[1] > before[1]  # the other channel still moves
    assert int(quaff.outlier_scale_skipped) == 1


def test_scale_tracks_a_4x_jump_within_two_forwards() -> None:
    quaff, x, channels = trained_layer()
    quaff(x)
    target = fresh_scale(quaff, 4.0 * x, channels)
    assert bool((target > 1.5 * quaff.outlier_scale).all())  # the jump moves the scale
    quaff(4.0 * x)
    quaff(4.0 * x)
    rel = (quaff.outlier_scale - target).abs() / target
    assert bool((rel <= 0.1).all())


@pytest.mark.parametrize(("beta", "expected"), [(1.0, "fresh"), (0.0, "first")])
def test_beta_extremes(beta: float, expected: str) -> None:
    quaff, x, channels = trained_layer(scale_beta=beta)
    quaff(x)
    first = quaff.outlier_scale.clone()
    quaff(4.0 * x)
    want = fresh_scale(quaff, 4.0 * x, channels) if expected == "fresh" else first
    torch.testing.assert_close(quaff.outlier_scale, want)


def test_deprecated_momentum_keeps_its_old_meaning() -> None:
    quaff, _, _ = trained_layer(momentum=0.75)
    assert quaff.scale_beta == 0.25


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_scale_beta_range(bad: float) -> None:
    with pytest.raises(ValueError, match=r"scale_beta must be in \[0, 1\]"):
        check_scale_beta(bad)


def test_pad_tokens_are_left_out() -> None:
    quaff, x, channels = trained_layer()
    xb = x.reshape(4, 8, 64).clone()
    mask = torch.ones(4, 8, dtype=torch.long)
    mask[1, 5:] = 0
    xb[1, 5:, channels[0]] = 1e6  # a huge value on pad positions only
    with token_mask(mask):
        quaff(xb)
    torch.testing.assert_close(quaff.outlier_scale, fresh_scale(quaff, xb[mask.bool()], channels))


def test_track_token_mask_reads_attention_mask(tiny_llama: LlamaForCausalLM) -> None:
    layer = "model.layers.0.mlp.down_proj"
    convert_to_quaff(tiny_llama, OutlierMap(layers={layer: [3]}), compile=False)
    quaff = tiny_llama.get_submodule(layer)
    assert isinstance(quaff, QuaffLinear)
    tiny_llama.train()
    seen: list[torch.Tensor] = []
    quaff.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    ids = torch.randint(0, 512, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, 8:] = 0
    handles = track_token_mask(tiny_llama)
    tiny_llama(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    x = seen[0].reshape(-1, quaff.in_features)[mask.reshape(-1).bool()]
    x = x.to(quaff.compute_dtype or x.dtype)  # the statistic is taken in the compute dtype
    assert float(quaff.outlier_scale) > 1.0  # a scale clamped to 1 would compare nothing
    torch.testing.assert_close(quaff.outlier_scale, fresh_scale(quaff, x, [3]))


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_recompute_does_not_update_twice(reentrant: bool) -> None:
    quaff, x, _channels = trained_layer()
    quaff(x)  # initialised
    eager = copy.deepcopy(quaff)
    xin = (3.0 * x).requires_grad_()
    out = checkpoint(quaff, xin, use_reentrant=reentrant)
    after_forward = quaff.outlier_scale.clone()
    out.sum().backward()
    torch.testing.assert_close(quaff.outlier_scale, after_forward)
    eager(3.0 * x)  # exactly one update, as without checkpointing
    torch.testing.assert_close(quaff.outlier_scale, eager.outlier_scale)
    assert xin.grad is not None
    assert bool(torch.isfinite(xin.grad).all())


def test_hf_gradient_checkpointing_updates_once(tiny_llama: LlamaForCausalLM) -> None:
    om = OutlierMap(layers={"model.layers.0.mlp.down_proj": [3], "model.layers.1.mlp.up_proj": [5]})
    convert_to_quaff(tiny_llama, om, compile=False)
    plain = copy.deepcopy(tiny_llama).train()
    tiny_llama.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    tiny_llama.train()
    ids = torch.randint(0, 512, (2, 16))
    for model in (tiny_llama, plain):
        model.get_input_embeddings().weight.requires_grad_(True)
        model(input_ids=ids, labels=ids).loss.backward()
    for key, value in quaff_state_dict(plain).items():
        torch.testing.assert_close(quaff_state_dict(tiny_llama)[key], value, msg=key)
