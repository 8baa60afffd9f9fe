"""What a run really uses: the "auto" settings resolved for its device, and the compile warm-up.

`resolve_runtime` turns `compute_dtype` / `compile` "auto" into values
(`quaff_core.quant.capabilities`);
`warm_up` runs one forward and backward before training so that `torch.compile` builds its code
outside the timed steps, and falls back to eager code when compilation fails.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from quaff_core.lm.evaluation import batch_counts
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.capabilities import (
    AUTO,
    DtypeSetting,
    kernel_choice,
    resolve_compile,
    resolve_compute_dtype,
)
from quaff_core.quant.head import HEAD_BACKENDS, int8_head_grads
from quaff_core.quant.linear import DEQUANT_FORWARD, quaff_layers
from quaff_core.quant.plan import MIN_GRAD_FEATURES, MIN_INT8_WIDTH, compile_pays
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training.callbacks import TrainCallbacks

logger = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# "auto" compiles only runs that repay the warm-up (measured: 15-40 s on a 2-core CPU): a model
# of at least this many parameters, trained for at least this many steps
COMPILE_MIN_PARAMS = 20_000_000
COMPILE_MIN_STEPS = 20


@dataclass(frozen=True)
class Runtime:
    """The resolved settings of one run (stored on the job, shown by the API)."""

    device: str
    compute_dtype: str
    compile: bool
    int8_backend: str
    threads: int
    gradient_checkpointing: bool
    devices: int = 1
    effective_batch_size: int = 0
    kernel_reason: str = ""
    compile_reason: str = ""

    @property
    def dtype(self) -> torch.dtype:
        """`compute_dtype` as a torch dtype."""
        return DTYPES[self.compute_dtype]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def training_device() -> str:
    """Where HF Trainer will put the model: CUDA when present, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def worth_compiling(n_params: int, total_steps: int, tokens_per_step: int = 2048) -> bool:
    """Whether a run is big and long enough for `torch.compile`'s warm-up to pay off."""
    return _compile_verdict("cpu", n_params, total_steps, tokens_per_step)[0]


def _compile_verdict(
    device_type: str, n_params: int, total_steps: int, tokens_per_step: int
) -> tuple[bool, str]:
    """(compile, why) for "auto" where inductor works (`quaff_core.quant.plan.compile_pays`)."""
    if n_params < COMPILE_MIN_PARAMS or total_steps < COMPILE_MIN_STEPS:
        return False, (
            f"compile off: {n_params} parameters / {total_steps} steps are below the "
            f"{COMPILE_MIN_PARAMS} / {COMPILE_MIN_STEPS} that can repay its warm-up"
        )
    choice = compile_pays(
        device_type, n_params=n_params, tokens_per_step=tokens_per_step, total_steps=total_steps
    )
    return choice.compile, choice.reason


def _kernel_reason(device: str) -> tuple[str, str]:
    """(int8 backend of `device`, why), with the per-layer rule of `auto` appended."""
    backend, why = kernel_choice(torch.device(device).type)
    floor = MIN_INT8_WIDTH.get(backend)
    on_cpu = torch.device(device).type == "cpu"
    if floor is not None and on_cpu:
        why += f"; layers with K*N/(K+N) < {floor} run dequantized (the int8 GEMM cannot win there)"
    if backend in HEAD_BACKENDS:
        why += "; a frozen output head's input gradient runs through it too (the logits do not)"
    grad_floor = MIN_GRAD_FEATURES.get(backend)
    if grad_floor is not None and on_cpu:
        why += (
            f"; layers with fewer than {grad_floor[0]} input or {grad_floor[1]} output features "
            "run dequantized throughout"
        )
    return backend, why


def _resolve_compile(
    config: TrainConfig, device: str, backend: str, n_params: int, total_steps: int
) -> tuple[bool, str]:
    """(compile, why) of a quantized run."""
    if config.compile != AUTO:
        return bool(config.compile), f"compile {'on' if config.compile else 'off'}: as configured"
    if not resolve_compile(AUTO, device):
        return False, "compile off: inductor cannot build code on this device"
    if backend in DEQUANT_FORWARD:
        return False, (
            f"compile off: the {backend} backend's forward runs dequantized, leaving at most one "
            "quantize pass a layer (the output gradient's, in place in eager code) to fuse"
        )
    tokens = config.effective_batch_size * config.max_seq_length
    return _compile_verdict(torch.device(device).type, n_params, total_steps, tokens)


def resolve_runtime(
    config: TrainConfig,
    device: str | None = None,
    *,
    n_params: int = COMPILE_MIN_PARAMS,
    total_steps: int = COMPILE_MIN_STEPS,
) -> Runtime:
    """The config's "auto" settings resolved for `device` (default: the training device), each
    with its reason: the int8 backend (`kernel_choice` and the per-layer rule of
    `quaff_core.quant.plan`); compile "auto" = where inductor works, some layer quantizes and
    the warm-up is earned back over `total_steps` (`quaff_core.quant.plan.compile_pays`)."""
    device = device or training_device()
    setting: DtypeSetting = (
        AUTO if config.compute_dtype == AUTO else DTYPES[str(config.compute_dtype)]
    )
    dtype = resolve_compute_dtype(setting, device) or torch.float32
    name = next(k for k, v in DTYPES.items() if v == dtype)
    quantized = config.quantization == "quaff"
    backend, kernel_why = _kernel_reason(device) if quantized else ("none", "")
    compile, compile_why = (
        _resolve_compile(config, device, backend, n_params, total_steps)
        if quantized
        else (False, "compile off: nothing is quantized")
    )
    return Runtime(
        device=device,
        compute_dtype=name,
        compile=compile,
        int8_backend=backend,
        threads=torch.get_num_threads(),
        gradient_checkpointing=config.gradient_checkpointing,
        devices=config.devices,
        effective_batch_size=config.effective_batch_size,
        kernel_reason=kernel_why,
        compile_reason=compile_why,
    )


def report_runtime(runtime: Runtime, callbacks: TrainCallbacks) -> None:
    """One event with the resolved settings."""
    callbacks.on_event(
        TrainEvent(
            EventKind.RUNTIME,
            f"Training on {runtime.device} with {runtime.compute_dtype} compute, "
            f"compile {'on' if runtime.compile else 'off'}, int8 backend {runtime.int8_backend}, "
            f"{runtime.threads} threads, {runtime.devices} device(s), effective batch "
            f"{runtime.effective_batch_size}"
            + (
                f" ({runtime.kernel_reason}; {runtime.compile_reason})"
                if runtime.kernel_reason
                else ""
            ),
            runtime.to_dict(),
        )
    )


def _compile_off(model: nn.Module) -> None:
    """Switch every QuaffLinear of `model`, and its head's int8 input gradient, to eager
    quantize passes."""

    for layer in quaff_layers(model).values():
        layer.compile_setting = False
    for head in int8_head_grads(model):
        head.compile_setting = False


def warm_up(model: nn.Module, batch: dict[str, torch.Tensor], callbacks: TrainCallbacks) -> bool:
    """One eval-mode forward + backward on `batch` (compiles what `compile` asks for); on a
    compile failure the model goes eager and an event says so. Returns whether compile held.

    Eval mode: no dropout and no outlier-scale update, so training is unchanged; LoRA gradients
    made here are dropped.
    """

    layers = quaff_layers(model).values()
    device = next((layer.weight.device for layer in layers), torch.device("cpu"))
    all_dequant = all(layer.backend_for(device) == "dequant" for layer in layers)
    if layers and all_dequant and not int8_head_grads(model):
        logger.info("no layer quantizes activations (all dequant): nothing to compile")
        return False
    was_training = model.training
    start = time.monotonic()
    compiled = True
    model.eval()
    try:
        batch_counts(model, batch).loss.backward()
    except Exception as exc:  # inductor raises many types; any failure means: run eager
        logger.warning("torch.compile failed, training eagerly: %s", exc)
        compiled = False
        _compile_off(model)
        torch._dynamo.reset()
        callbacks.on_event(
            TrainEvent(
                EventKind.COMPILE_FALLBACK,
                f"torch.compile failed ({type(exc).__name__}); training goes on without it",
                {"error": type(exc).__name__, "message": str(exc).splitlines()[0][:300]},
                level="warn",
            )
        )
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    seconds = round(time.monotonic() - start, 2)
    if compiled:
        callbacks.on_event(
            TrainEvent(
                EventKind.WARMUP,
                f"Compiled the quantize passes in {seconds} s (kept out of the ETA)",
                {"seconds": seconds},
            )
        )
    return compiled
