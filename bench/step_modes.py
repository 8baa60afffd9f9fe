"""Training-step modes for bench/step.py: each builds a model + optimizer and runs one LoRA step."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from quaff_core.calibration import calibrate, quantizable_linears
from quaff_core.convert import convert_to_quaff
from quaff_core.loss import chunked_causal_lm_loss
from quaff_core.outliers import OutlierMap
from quaff_core.peft import add_lora

LORA_R = 16
LORA_ALPHA = 32


@dataclass
class Runner:
    """A ready-to-step model: `step()` runs forward, backward and AdamW once; returns the loss."""

    model: nn.Module
    step: Callable[[torch.Tensor], float]


@dataclass(frozen=True)
class Mode:
    """A benchmark mode: what it includes (printed) and how to build it from an fp32 base."""

    description: str
    build: Callable[[nn.Module, list[torch.Tensor], bool], Runner]


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW over the trainable (LoRA) parameters."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def _hf_loss_runner(model: nn.Module, autocast: bool) -> Runner:
    """Plain PEFT step: HF forward with labels (full logits + cross-entropy)."""
    opt = _optimizer(model)

    def step(ids: torch.Tensor) -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with ctx:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return Runner(model, step)


def _plain_lora(base: nn.Module) -> nn.Module:
    """PEFT LoRA r=16 on all linear layers but the head of a deep copy of `base`."""
    config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, target_modules="all-linear")
    return get_peft_model(copy.deepcopy(base), config)


def build_fp32(base: nn.Module, calib: list[torch.Tensor], compile: bool) -> Runner:
    """fp32 PEFT LoRA."""
    return _hf_loss_runner(_plain_lora(base), autocast=False)


def build_bf16_autocast(base: nn.Module, calib: list[torch.Tensor], compile: bool) -> Runner:
    """PEFT LoRA on the fp32 model, step under bf16 autocast."""
    return _hf_loss_runner(_plain_lora(base), autocast=True)


def _quaff_runner(
    base: nn.Module, calib: list[torch.Tensor], compile: bool, dtype: torch.dtype, outliers: bool
) -> Runner:
    """Product path: calibrate, convert_to_quaff, add_lora, chunked loss."""
    model = copy.deepcopy(base)
    if outliers:
        om = calibrate(model, calib)
    else:  # plain W8A8 ablation: the same int8 path with no outlier channels
        om = OutlierMap(layers={name: [] for name in quantizable_linears(model)})
    model.to(dtype)
    convert_to_quaff(model, om, compute_dtype=dtype, compile=compile)
    peft_model = add_lora(model, r=LORA_R, alpha=LORA_ALPHA)
    inner = peft_model.base_model.model
    opt = _optimizer(peft_model)
    use_autocast = dtype == torch.bfloat16

    def step(ids: torch.Tensor) -> float:
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if use_autocast
            else contextlib.nullcontext()
        )
        with ctx:
            hidden = inner.model(input_ids=ids).last_hidden_state
            loss, _, _ = chunked_causal_lm_loss(hidden, inner.lm_head, ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return Runner(peft_model, step)


MODES: dict[str, Mode] = {
    "fp32": Mode("plain PEFT LoRA, fp32 model, HF loss (full logits)", build_fp32),
    "bf16-autocast": Mode(
        "plain PEFT LoRA, fp32 model under torch.autocast(cpu, bf16), HF loss (full logits)",
        build_bf16_autocast,
    ),
    "quaff-fp32": Mode(
        "calibrate + convert_to_quaff(int8 base, fp32 compute) + add_lora, fp32 rest, "
        "chunked head+CE loss",
        lambda b, c, comp: _quaff_runner(b, c, comp, torch.float32, True),
    ),
    "quaff-bf16": Mode(
        "calibrate + convert_to_quaff(int8 base, bf16 compute) + add_lora (fp32 master "
        "weights, bf16 autocast), model cast to bf16 (attention, norms, head), chunked loss",
        lambda b, c, comp: _quaff_runner(b, c, comp, torch.bfloat16, True),
    ),
    "w8a8-bf16": Mode(
        "ablation: as quaff-bf16 but no outlier channels (plain W8A8)",
        lambda b, c, comp: _quaff_runner(b, c, comp, torch.bfloat16, False),
    ),
}
