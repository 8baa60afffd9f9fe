"""Training-step modes for bench/step.py: each builds a model + optimizer and runs one LoRA step."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from quaff_core.adapters.peft_layers import add_lora
from quaff_core.calibration.calibrate import calibrate
from quaff_core.lm.evaluation import batch_counts
from quaff_core.quant.capabilities import BackendSetting, CompileSetting, resolve_compute_dtype
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.targets import quantizable_linears

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
    build: Callable[[nn.Module, list[torch.Tensor], CompileSetting], Runner]


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW over the trainable (LoRA) parameters."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def _loss(model: nn.Module, ids: torch.Tensor, chunked: bool) -> torch.Tensor:
    """Mean next-token CE: chunked head + CE (`chunked_causal_lm_loss`) or HF's full logits."""
    if not chunked:
        loss: torch.Tensor = model(input_ids=ids, labels=ids).loss
        return loss
    return batch_counts(model, {"input_ids": ids, "labels": ids}).loss


def _runner(model: nn.Module, *, autocast: bool, chunked: bool) -> Runner:
    """One step: forward (optionally under CPU bf16 autocast), backward, AdamW."""
    opt = _optimizer(model)

    device = next(model.parameters()).device

    def step(ids: torch.Tensor) -> float:
        ids = ids.to(device)
        ctx = (
            torch.autocast(device.type, dtype=torch.bfloat16)
            if autocast
            else contextlib.nullcontext()
        )
        with ctx:
            loss = _loss(model, ids, chunked)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return Runner(model, step)


def _checkpointed(model: nn.Module) -> None:
    """HF gradient checkpointing of the decoder layers (non-reentrant)."""
    model.gradient_checkpointing_enable(  # type: ignore[operator]
        gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    model.enable_input_require_grads()  # type: ignore[operator]


def _plain_lora(
    base: nn.Module, checkpointing: bool, dtype: torch.dtype | None = None
) -> nn.Module:
    """PEFT LoRA r=16 on all linear layers but the head of a deep copy of `base` (cast to
    `dtype` first; PEFT keeps the adapters in float32)."""
    model = copy.deepcopy(base)
    if dtype is not None:
        model.to(dtype)
    if checkpointing:
        _checkpointed(model)
    config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, target_modules="all-linear")
    return get_peft_model(model, config)


def _baseline(
    autocast: bool, chunked: bool, checkpointing: bool = False, dtype: torch.dtype | None = None
) -> Callable[..., Runner]:
    """Builder of a plain PEFT LoRA mode (base weights in `dtype`, None: as loaded)."""

    def build(base: nn.Module, calib: list[torch.Tensor], compile: CompileSetting) -> Runner:
        model = _plain_lora(base, checkpointing, dtype).train()  # HF checkpoints only in train
        return _runner(model, autocast=autocast, chunked=chunked)

    return build


def _quaff(
    *,
    dtype: torch.dtype | str = "auto",
    outliers: bool = True,
    compile_override: CompileSetting | None = None,
    checkpointing: bool = False,
    backend: BackendSetting = "auto",
    head_grad: bool = True,
) -> Callable[..., Runner]:
    """Builder of a product-path mode: calibrate, convert_to_quaff, add_lora, chunked loss
    (`backend`: every layer's int8 backend, "auto" as the library picks; `head_grad`: the frozen
    head's input gradient through the int8 GEMM where the device has one)."""

    def build(base: nn.Module, calib: list[torch.Tensor], compile: CompileSetting) -> Runner:
        model = copy.deepcopy(base)
        if outliers:
            om = calibrate(model, calib)
        else:  # plain W8A8 ablation: the same int8 path with no outlier channels
            om = OutlierMap(layers={name: [] for name in quantizable_linears(model)})
        device = next(model.parameters()).device
        resolved = resolve_compute_dtype(dtype, device)  # type: ignore[arg-type]
        if resolved == torch.bfloat16:
            model.to(resolved)  # attention, norms and head in bf16 too; LoRA stays fp32
        comp = compile if compile_override is None else compile_override
        convert_to_quaff(
            model, om, compute_dtype=resolved, compile=comp, backend=backend, head_grad=head_grad
        )
        if checkpointing:
            _checkpointed(model)
        peft_model = add_lora(model, r=LORA_R, alpha=LORA_ALPHA)
        peft_model.train()
        return _runner(peft_model, autocast=resolved == torch.bfloat16, chunked=True)

    return build


MODES: dict[str, Mode] = {
    "fp32": Mode("plain PEFT LoRA, fp32 model, chunked head+CE loss", _baseline(False, True)),
    "fp32-hf": Mode("plain PEFT LoRA, fp32 model, HF loss (full logits)", _baseline(False, False)),
    "bf16-autocast": Mode(
        "plain PEFT LoRA, fp32 model under torch.autocast(cpu, bf16), chunked loss",
        _baseline(True, True),
    ),
    "bf16-base": Mode(
        "plain PEFT LoRA, the base cast to bf16 (fp32 adapters) under torch.autocast(bf16), "
        "chunked loss",
        _baseline(True, True, dtype=torch.bfloat16),
    ),
    "bf16-autocast-hf": Mode(
        "plain PEFT LoRA under torch.autocast(cpu, bf16), HF loss (full logits)",
        _baseline(True, False),
    ),
    "quaff": Mode(
        "Quaff with library defaults: calibrate + convert_to_quaff(compute_dtype/compile "
        "'auto') + add_lora, chunked loss",
        _quaff(),
    ),
    "quaff-eager": Mode("as quaff, compile=False", _quaff(compile_override=False)),
    "quaff-exact-head": Mode(
        "as quaff with the head's input gradient in the compute dtype (no int8 head copy)",
        _quaff(head_grad=False),
    ),
    "quaff-int-mm": Mode(
        "as quaff with every layer on the int_mm backend (torch._int_mm: the weight reordered "
        "per call)",
        _quaff(backend="int_mm"),
    ),
    "quaff-onednn-s8": Mode(
        "as quaff with every layer on the onednn_s8 backend (oneDNN u8 x s8, prepacked; VNNI/AMX)",
        _quaff(backend="onednn_s8"),
    ),
    "quaff-onednn": Mode(
        "as quaff with every layer on the onednn backend (u8 x s7, the fast int8 GEMM of AVX2)",
        _quaff(backend="onednn"),
    ),
    "quaff-onednn-grad": Mode(
        "as quaff with every layer on the onednn_grad backend (forward dequantized, input "
        "gradient through oneDNN's u8 x s7 GEMM)",
        _quaff(backend="onednn_grad"),
    ),
    "quaff-dequant": Mode(
        "as quaff with every layer on the dequant backend (int8 weights, float GEMMs)",
        _quaff(backend="dequant"),
    ),
    "quaff-bf16": Mode(
        "as quaff with compute_dtype=bf16: model cast to bf16, LoRA fp32 under bf16 autocast",
        _quaff(dtype=torch.bfloat16),
    ),
    "w8a8": Mode("ablation: as quaff but no outlier channels (plain W8A8)", _quaff(outliers=False)),
    "quaff-gc": Mode(
        "as quaff + gradient checkpointing (HF, non-reentrant)", _quaff(checkpointing=True)
    ),
    # the earlier names, kept for bench/speed.py and the report
    "quaff-fp32": Mode("as quaff with compute_dtype=fp32", _quaff(dtype=torch.float32)),
    "w8a8-bf16": Mode(
        "as quaff-bf16 but no outlier channels", _quaff(dtype=torch.bfloat16, outliers=False)
    ),
    "fp32-gc": Mode("as fp32 + gradient checkpointing", _baseline(False, True, True)),
}
