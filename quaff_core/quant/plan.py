"""The kernel plan of a run: which int8 backend each layer runs and whether compiling pays.

`auto` must never make a step slower than plain LoRA in the compute dtype:
- the device's int8 GEMM (`capabilities.kernel_choice`) runs a layer only where its saving can
  beat the quantize / dequantize passes around it: those passes cost O(M (K + N)) against the
  GEMM's O(M K N), so the rule is on the layer's effective width K N / (K + N); narrower layers
  (SmolLM2's, the k/v projections of grouped attention) run their int8 weights dequantized into
  the compute dtype (the "dequant" backend: the speed of a plain GEMM, the int8 memory);
- "onednn_grad" quantizes only the output gradient, O(M N), to save on dY @ W, O(M K N): the
  saving per quantized element grows with K, and narrow outputs do not repay the per-call work,
  so layers with few input or output features stay "dequant" (bench.layer, AVX2, against fp32:
  onednn_grad 0.89x / 0.77x / 0.80x at 576x1536 / 576x192 / 896x128, where dequant is 0.93x /
  0.88x / 0.89x; 1.00x / 1.01x / 1.11x at 896x896 / 896x4864 / 1536x576, where dequant is
  0.93x / 0.93x / 0.96x);
- `torch.compile` fuses the quantize passes but costs a warm-up; "auto" compiles only where the
  estimated saving over the job's steps earns the warm-up back, and never when no layer quantizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import torch

from quaff_core.quant.capabilities import (
    AUTO,
    BackendSetting,
    Int8Backend,
    int8_backend,
    int_mm_native,
)

# effective width K N / (K + N) from which an int8 GEMM beats the compute dtype's GEMM on CPU
# (int_mm: bf16 GEMMs with AVX512-VNNI int8; onednn_s8: AMX's bf16 GEMMs, `bench.layer --dtype
# bf16 --compile`: 0.61x / 0.82x at 576x1536 / 896x896 (widths 419 / 448), 1.07x / 1.18x at
# 896x4864 / 4864x896 (757), 0.74x / 1.17x at 2048x8192 / 8192x2048 (1638, the first with a
# 32 MiB float32 output that glibc maps afresh per call)); CUDA's int_mm has no floor
MIN_INT8_WIDTH: Final[dict[str, int]] = {"int_mm": 512, "onednn_s8": 640}
# (input, output) features from which the int8 input gradient beats the dequantized one on CPU
MIN_GRAD_FEATURES: Final[dict[str, tuple[int, int]]] = {"onednn_grad": (768, 512)}
# compile warm-up (measured 14-16 s cold, 39 s on a loaded 2-core CPU) and what fusing the passes
# saves, per int8 weight element and token of a step (~15% of a bf16 projection's time)
COMPILE_WARMUP_S: Final[dict[str, float]] = {"cpu": 20.0, "cuda": 60.0}
COMPILE_SAVING_S: Final[dict[str, float]] = {"cpu": 6e-12, "cuda": 1e-13}


def effective_width(in_features: int, out_features: int) -> float:
    """K N / (K + N): GEMM work per element of the passes around it."""
    return in_features * out_features / (in_features + out_features)


def layer_backend(
    backend: Int8Backend, in_features: int, out_features: int, device_type: str
) -> Int8Backend:
    """The backend a layer of this shape runs under `auto`: the device's int8 `backend`, or
    "dequant" on CPU where the layer is too narrow for the int8 GEMM to win."""
    if device_type != "cpu":
        return backend
    floor = MIN_INT8_WIDTH.get(backend)
    if floor is not None and effective_width(in_features, out_features) < floor:
        return "dequant"
    min_in, min_out = MIN_GRAD_FEATURES.get(backend, (0, 0))
    if in_features < min_in or out_features < min_out:
        return "dequant"
    return backend


def resolve_backend(
    setting: BackendSetting, in_features: int, out_features: int, device: torch.device
) -> Int8Backend:
    """The backend a layer of this shape runs on `device`: `setting` as given, or under `auto`
    the device's int8 backend (`capabilities.int8_backend`) after `layer_backend`'s rule."""
    if setting != AUTO:
        return setting
    return layer_backend(int8_backend(device), in_features, out_features, device.type)


def onednn_s8_packs(in_features: int, out_features: int) -> tuple[bool, bool]:
    """(forward, grad): the directions an "onednn_s8" layer runs through oneDNN's prepacked
    weight. Each pack is one more int8 copy of the weight, so where `torch._int_mm` is a real
    GEMM (AMX, AVX512-VNNI) only the direction with the wider output is packed: there the pack
    gains most (AMX, 1024 rows: `_int_mm` 3.7 ms / packed 1.8 ms at 896 -> 4864 features, 2.4 /
    2.1 ms at 4864 -> 896); the other runs `_int_mm` on the layer's own weight. Elsewhere (AVX-VNNI)
    both are packed."""
    if not int_mm_native():
        return True, True
    return out_features >= in_features, in_features > out_features


@dataclass(frozen=True)
class CompileChoice:
    """Whether to compile the quantize passes, and why."""

    compile: bool
    reason: str


def compile_pays(
    device_type: str, *, n_params: int, tokens_per_step: int, total_steps: int
) -> CompileChoice:
    """Whether `torch.compile`'s warm-up is earned back within the job: the estimated saving
    (n_params bounds the int8 weights) times the steps against the warm-up."""
    warmup = COMPILE_WARMUP_S.get(device_type)
    saving_per_step = COMPILE_SAVING_S.get(device_type, 0.0) * n_params * tokens_per_step
    if warmup is None or saving_per_step <= 0:
        return CompileChoice(False, f"no compile estimate for {device_type}")
    saved = saving_per_step * total_steps
    verdict = "earns back" if saved >= warmup else "does not earn back"
    reason = (
        f"compile {verdict} its ~{warmup:.0f} s warm-up: ~{saving_per_step:.2f} s saved a step "
        f"x {total_steps} steps"
    )
    return CompileChoice(saved >= warmup, reason)
