"""Resolve the engine's `"auto"` settings for a device, once per process (results are cached).

- `resolve_compute_dtype(device)`: bfloat16 where the device computes it natively (CUDA with bf16
  support; a CPU with AVX512-BF16 or AMX, or where a one-time micro-probe finds a bf16 GEMM
  faster than a float32 one), else float32.
- `resolve_compile(device)`: True where inductor can generate code (a C++ compiler on CPU,
  Triton on CUDA).
- `int8_backend(device)` / `kernel_choice(kind)`: the int8 GEMM of the device.
  - "int_mm": `torch._int_mm` (CUDA; AVX512-VNNI CPUs; or where a probe finds it faster than
    float32). Without AVX512-VNNI torch runs it as a scalar loop, ~50-100x slower than float32.
  - "onednn_s8": oneDNN's prepacked u8 x s8 GEMM with the 8-bit weights, exact wherever the CPU
    has VNNI (AMX, AVX-VNNI): on AMX 1.2-2.2x `torch._int_mm`, which reorders the weight per call;
    on AVX-VNNI the one int8 GEMM (torch's `_int_mm` needs AVX512-VNNI).
  - "onednn_grad" on AVX2 CPUs: the forward dequantized, the input gradient through oneDNN's
    u8 x s8 GEMM with 7-bit weights (AVX2's pair sums saturate 8-bit ones).
  - else "dequant": the int8 weights dequantized into the compute dtype per call.
  - "onednn" (the 7-bit GEMM for the forward too: faster, but above the logits error bars) and
    "fp32" (exact integer products through a float32 GEMM) run only when asked.
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from collections.abc import Callable
from typing import Final, Literal

import torch

from quaff_core.cpu_flags import cpuinfo_flags
from quaff_core.quant.onednn import onednn_available

logger = logging.getLogger(__name__)

AUTO: Final = "auto"
Int8Backend = Literal["int_mm", "onednn_s8", "onednn", "onednn_grad", "dequant", "fp32"]
INT8_BACKENDS: Final = ("int_mm", "onednn_s8", "onednn", "onednn_grad", "dequant", "fp32")
# the backends whose input gradient runs oneDNN's u8 x s8 GEMM on the layer's prepacked W^T
ONEDNN_GRAD_BACKENDS: Final = ("onednn_s8", "onednn", "onednn_grad")
# ... and whose forward runs it on the prepacked W
ONEDNN_FORWARD_BACKENDS: Final = ("onednn_s8", "onednn")
DtypeSetting = torch.dtype | Literal["auto"] | None
CompileSetting = bool | Literal["auto"]
BackendSetting = Int8Backend | Literal["auto"]
_PROBE_SHAPE = (128, 256, 256)
_PROBE_MARGIN = 1.2  # the low-precision GEMM must win by this factor to be chosen


def _device_type(device: torch.device | str | None) -> str:
    """'cpu', 'cuda', ... of a device spec (None = cpu)."""
    return torch.device(device if device is not None else "cpu").type


def _cpu_flag(name: str) -> bool:
    """A `torch.cpu._is_<name>_supported()` flag; False where this torch lacks it."""
    probe = getattr(torch.cpu, f"_is_{name}_supported", None)
    return bool(probe()) if callable(probe) else False


def _fastest(fns: list[Callable[[], object]], rounds: int = 4) -> list[float]:
    """Best time of each of `fns`, measured interleaved (round-robin) after one warm-up call:
    the minimum is what the hardware can do, whatever else the machine runs meanwhile."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


@functools.cache
def cpu_class() -> str:
    """This CPU's class for the int8/bf16 kernel choice: 'AMX', 'AVX512-VNNI/BF16',
    'AVX512-VNNI', 'AVX-VNNI' (256-bit), 'AVX2' or 'other'."""
    if _cpu_flag("amx_tile"):
        return "AMX"
    if _cpu_flag("vnni"):
        return "AVX512-VNNI/BF16" if _cpu_flag("avx512_bf16") else "AVX512-VNNI"
    if "avx_vnni" in cpuinfo_flags():
        return "AVX-VNNI"
    return "AVX2" if _cpu_flag("avx2") else "other"


def device_class(device: torch.device | str | None) -> str:
    """The machine class of `device` as benchmark tables print it (CPU class or GPU name)."""
    if _device_type(device) == "cuda" and torch.cuda.is_available():
        return f"CUDA {torch.cuda.get_device_name(torch.device(device or 'cuda'))}"
    return f"CPU {cpu_class()}"


@functools.cache
def _cpu_probe(kind: str) -> float:
    """Speed-up of a `kind` ('bf16' or 'int8') GEMM over float32 on this CPU (one-time probe).

    One thread, interleaved, best of several: on a busy machine a multi-threaded float32 GEMM can
    stall behind descheduled threads and make a slow fallback kernel look fast.
    """
    m, k, n = _PROBE_SHAPE
    g = torch.Generator().manual_seed(0)  # never draw from the global RNG (training seeds it)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    if kind == "bf16":
        ab, bb = a.bfloat16(), b.bfloat16()
        other: Callable[[], object] = lambda: ab @ bb  # noqa: E731
    else:
        qa = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
        qb = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g).t()
        other = lambda: torch._int_mm(qa, qb)  # noqa: E731
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32, low = _fastest([lambda: a @ b, other])
    finally:
        torch.set_num_threads(threads)
    speedup = fp32 / max(low, 1e-9)
    logger.info("CPU probe: %s GEMM is %.2fx float32", kind, speedup)
    return speedup


def native_bf16(device: torch.device | str | None) -> bool:
    """Whether `device` computes bfloat16 GEMMs natively (faster than float32)."""
    kind = _device_type(device)
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        if _cpu_flag("avx512_bf16") or _cpu_flag("amx_tile"):
            return True
        return _cpu_probe("bf16") >= _PROBE_MARGIN
    return False


def int_mm_native() -> bool:
    """Whether torch's CPU `_int_mm` runs oneDNN's GEMM here (AVX512-VNNI, AMX), not a scalar
    loop."""
    return cpu_class() in ("AMX", "AVX512-VNNI/BF16", "AVX512-VNNI")


def onednn_eight_bit_exact() -> bool:
    """Whether oneDNN's u8 x s8 GEMM is exact with 8-bit weights on this CPU: with VNNI (those
    of `int_mm_native`, and AVX-VNNI) or AMX the products accumulate into int32; AVX2's pair
    sums saturate 16 bits."""
    return int_mm_native() or cpu_class() == "AVX-VNNI"


@functools.cache
def kernel_choice(kind: str) -> tuple[Int8Backend, str]:
    """(int8 backend, why) for a device type (see the module docstring): `torch._int_mm` on
    CUDA and AVX512-VNNI CPUs, oneDNN's prepacked exact 8-bit GEMM on AMX and AVX-VNNI CPUs,
    the input gradient alone through its 7-bit variant on AVX2 (the forward misses the logits
    bars there, bench.activation_bits), else the int8 weights dequantized into the compute dtype
    (the speed of a plain GEMM, the int8 memory)."""
    if kind == "cuda":
        return "int_mm", "CUDA: torch._int_mm (cuBLASLt int8 GEMM)"
    if kind != "cpu":
        return "dequant", f"{kind}: no int8 GEMM kernel; int8 weights dequantized per call"
    klass = cpu_class()
    if klass in ("AMX", "AVX-VNNI") and onednn_available():
        return "onednn_s8", (
            f"CPU {klass}: oneDNN's u8 x s8 GEMM on prepacked 8-bit weights (exact with "
            + ("AMX; 1.2-2.2x torch._int_mm, which reorders the weight per call)" if klass == "AMX"
               else "VNNI; torch._int_mm is a scalar loop without AVX512-VNNI)")
        )  # fmt: skip
    if int_mm_native():
        return "int_mm", f"CPU {klass}: torch._int_mm (oneDNN s8s8 with VNNI/AMX)"
    if _cpu_probe("int8") >= _PROBE_MARGIN:
        return "int_mm", f"CPU {klass}: torch._int_mm measured faster than float32"
    if klass == "AVX2" and onednn_available():
        return "onednn_grad", (
            f"CPU {klass}: no exact 8-bit int8 GEMM faster than float32 (the u8 x s8 pair sums "
            "force 7-bit weights, 1.6x the logits error in the forward); int8 weights dequantized "
            "in the forward (memory kept, the logits of the 8-bit weights), the input gradient "
            "through oneDNN's u8 x s7 GEMM"
        )
    return "dequant", (
        f"CPU {klass}: no int8 GEMM faster than the compute dtype's; "
        "int8 weights dequantized per call (memory kept, speed of a plain GEMM)"
    )


def int8_backend(device: torch.device | str | None) -> Int8Backend:
    """The int8 backend `auto` runs on `device` (`kernel_choice`)."""
    return kernel_choice(_device_type(device))[0]


def resolve_compute_dtype(
    setting: DtypeSetting = AUTO, device: torch.device | str | None = None
) -> torch.dtype | None:
    """'auto' -> bfloat16 where native on `device`, else float32; a dtype or None as given."""
    if setting is None or isinstance(setting, torch.dtype):
        if setting is not None and not setting.is_floating_point:
            raise TypeError(f"compute_dtype must be a floating dtype, got {setting}")
        return setting
    if setting != AUTO:
        raise ValueError(f"compute_dtype must be a torch dtype, None or 'auto', got {setting!r}")
    return torch.bfloat16 if native_bf16(device) else torch.float32


@functools.cache
def _inductor_works(kind: str) -> bool:
    """Cached body of `resolve_compile`'s 'auto'."""
    if kind == "cuda":
        from torch.utils._triton import has_triton

        return bool(has_triton())
    if kind == "cpu":
        from torch._inductor import cpp_builder

        try:
            compiler = cpp_builder.get_cpp_compiler()
        except (RuntimeError, OSError) as exc:
            logger.info("no C++ compiler for inductor: %s", exc)
            return False
        return shutil.which(compiler) is not None
    return False


def resolve_compile(
    setting: CompileSetting = AUTO, device: torch.device | str | None = None
) -> bool:
    """'auto' -> True where inductor can compile for `device`; a bool as given."""
    if isinstance(setting, bool):
        return setting
    if setting != AUTO:
        raise ValueError(f"compile must be true, false or 'auto', got {setting!r}")
    return _inductor_works(_device_type(device))


def bucket_length(length: int, max_length: int, multiple: int = 64) -> int:
    """The padded length of a batch whose longest row has `length` tokens: the next multiple of
    `multiple`, at most `max_length` (so compiled code sees a few lengths, not every one)."""
    if length < 1 or max_length < 1 or multiple < 1:
        raise ValueError(f"need positive lengths, got {length}, {max_length}, {multiple}")
    return min(-(-length // multiple) * multiple, max(max_length, length))


def pad_to_bucket(
    batch: dict[str, torch.Tensor], *, pad_token_id: int, max_length: int, multiple: int = 64
) -> dict[str, torch.Tensor]:
    """Right-pad `input_ids` [B, T] (with pad_token_id), `attention_mask` (0) and `labels`
    (-100) of a collated batch to `bucket_length(T, ...)`; other entries pass through."""
    length = int(batch["input_ids"].shape[1])
    extra = bucket_length(length, max_length, multiple) - length
    if extra <= 0:
        return batch
    fill = {"input_ids": pad_token_id, "attention_mask": 0, "labels": -100}
    return {
        key: torch.nn.functional.pad(value, (0, extra), value=fill[key]) if key in fill else value
        for key, value in batch.items()
    }
