"""QuaffLinear against a deep-copied fp32 nn.Linear reference."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from quaff_core.quant.linear import QuaffLinear
from tests.quaff_core.conftest import QUAFF_DEVICES


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float32."""
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def planted(
    lead: tuple[int, ...], k: int, n_outliers: int, seed: int = 0
) -> tuple[torch.Tensor, list[int]]:
    """Random input [*lead, k] with `n_outliers` channels scaled x100, and those channels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, k, generator=g)
    channels = sorted(torch.randperm(k, generator=g)[:n_outliers].tolist())
    x[..., channels] *= 100.0
    return x, channels


def make_pair(
    k: int, n: int, bias: bool, channels: list[int], dtype: torch.dtype | None, device: str
) -> tuple[nn.Linear, QuaffLinear]:
    """An fp32 reference linear and its Quaff conversion."""
    torch.manual_seed(1)
    ref = nn.Linear(k, n, bias=bias).to(device)
    quaff = QuaffLinear.from_linear(copy.deepcopy(ref), channels, compute_dtype=dtype)
    return ref, quaff


@pytest.mark.parametrize("device", QUAFF_DEVICES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(96,), (3, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_beats_w8a8_on_planted_outliers(
    device: str, bias: bool, lead: tuple[int, ...], dtype: torch.dtype
) -> None:
    x, channels = planted(lead, 512, 5)  # 1% of 512 channels
    x = x.to(device)
    ref, quaff = make_pair(512, 384, bias, channels, dtype, device)
    _, w8a8 = make_pair(512, 384, bias, [], dtype, device)
    with torch.no_grad():
        expected = ref(x)
        err = rel_err(quaff(x), expected)
        err_w8a8 = rel_err(w8a8(x), expected)
    assert err <= 0.01
    assert err * 10 <= err_w8a8


@pytest.mark.parametrize("device", QUAFF_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_input_grad_close(device: str, dtype: torch.dtype, bias: bool) -> None:
    x, channels = planted((2, 48), 256, 3, seed=2)
    x = x.to(device)
    ref, quaff = make_pair(256, 320, bias, channels, dtype, device)
    x_ref = x.clone().requires_grad_()
    x_q = x.clone().requires_grad_()
    y_ref = ref(x_ref)
    y_q = quaff(x_q)
    assert y_q.dtype == x.dtype  # computed in `dtype`, returned in the input's dtype
    assert y_q.shape == y_ref.shape
    assert rel_err(y_q, y_ref) <= 0.01
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y_q.backward(grad.to(dtype))
    assert x_q.grad is not None
    assert x_ref.grad is not None
    assert rel_err(x_q.grad, x_ref.grad) <= 0.02


@pytest.mark.parametrize("device", QUAFF_DEVICES)
@pytest.mark.parametrize(("k", "n", "lead"), [(37, 29, (1,)), (24, 13, (1, 1)), (45, 64, (5, 3))])
def test_odd_shapes(device: str, k: int, n: int, lead: tuple[int, ...]) -> None:
    x, channels = planted(lead, k, 1, seed=3)
    x = x.to(device).requires_grad_()
    ref, quaff = make_pair(k, n, True, channels, None, device)
    y = quaff(x)
    assert rel_err(y, ref(x)) <= 0.01
    y.sum().backward()
    expected = ref.weight.sum(0).expand_as(x)
    assert x.grad is not None
    assert rel_err(x.grad, expected) <= 0.02


def test_weight_is_int8_and_frozen_after_backward() -> None:
    x, channels = planted((16,), 64, 2)
    _, quaff = make_pair(64, 32, True, channels, None, "cpu")
    before = {k: v.clone() for k, v in quaff.state_dict().items() if "outlier_scale" not in k}
    quaff.train()
    quaff(x.requires_grad_()).sum().backward()
    assert quaff.weight.dtype == torch.int8
    assert tuple(quaff.weight.shape) == (32, 64)
    assert list(quaff.parameters()) == []
    for key, value in quaff.state_dict().items():
        if key in before:
            assert torch.equal(value, before[key]), key


def test_momentum_scale_smoothing() -> None:
    x, channels = planted((32,), 64, 2)
    _, quaff = make_pair(64, 16, False, channels, None, "cpu")
    quaff.train()
    quaff(x)
    first = quaff.outlier_scale.clone()
    w_max = quaff.outlier_weight.abs().amax(0)
    expected = (x[:, channels].abs().amax(0) / w_max).sqrt().clamp_min(1.0)
    torch.testing.assert_close(first, expected)
    assert bool(quaff.outlier_scale_initialized)
    quaff(x * 4.0)  # fresh scale doubles; scale_beta 0.9 weights the new value
    torch.testing.assert_close(quaff.outlier_scale, 0.9 * 2 * first + 0.1 * first)
    quaff.eval()
    quaff(x * 100.0)  # eval never updates the state
    torch.testing.assert_close(quaff.outlier_scale, first * 1.9)


def test_output_dtype_is_the_inputs_outside_autocast_and_autocasts_inside() -> None:
    """A bf16-computing layer in an fp32 model must not hand bf16 to the next fp32 op (attention
    refuses mixed q/k/v dtypes); under autocast it returns bf16 as autocast's linear does."""
    x, channels = planted((8,), 64, 2)
    _, quaff = make_pair(64, 32, True, channels, torch.bfloat16, "cpu")
    assert quaff(x).dtype == torch.float32
    assert quaff(x.bfloat16()).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert quaff(x).dtype == torch.bfloat16


def test_state_dict_round_trip() -> None:
    x, channels = planted((8,), 40, 2)
    _, quaff = make_pair(40, 24, True, channels, None, "cpu")
    quaff.train()
    quaff(x)
    fresh = QuaffLinear(40, 24, bias=True, n_outliers=2, compute_dtype=None)
    fresh.load_state_dict(quaff.state_dict())
    fresh.eval()
    quaff.eval()
    torch.testing.assert_close(fresh(x), quaff(x))
    assert fresh.weight.stride() == (1, 24)  # transposed int8 layout survives loading


@pytest.mark.parametrize("device", QUAFF_DEVICES)
def test_to_device_keeps_state(device: str) -> None:
    _, quaff = make_pair(32, 16, True, [3], None, "cpu")
    moved = copy.deepcopy(quaff).to(device)
    for name, buf in moved.named_buffers():
        assert buf.device.type == device, name
    assert moved.weight.dtype == torch.int8
    torch.testing.assert_close(moved.weight.cpu(), quaff.weight)


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="n_outliers"):
        QuaffLinear(8, 8, n_outliers=9)
    with pytest.raises(ValueError, match="scale_beta"):
        QuaffLinear(8, 8, scale_beta=1.5)
    with pytest.raises(ValueError, match="compile"):
        QuaffLinear(8, 8, compile="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outlier channels"):
        QuaffLinear.from_linear(nn.Linear(8, 4), [8])
    with pytest.raises(TypeError, match=r"nn\.Linear"):
        QuaffLinear.from_linear(nn.Conv1d(8, 4, 1), [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="last dim"):
        QuaffLinear(8, 4)(torch.randn(2, 7))


def test_autocast_does_not_change_quaff_numerics() -> None:
    x, channels = planted((64,), 128, 2, seed=5)
    _, quaff = make_pair(128, 96, True, channels, torch.float32, "cpu")
    with torch.no_grad():
        plain = quaff(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = quaff(x)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, plain)
