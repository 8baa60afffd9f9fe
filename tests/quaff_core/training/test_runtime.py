"""The resolved runtime of a run, the compile warm-up and its fallback to eager code."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

import quaff_core.quant.primitives
from quaff_core.data.jsonl import Example, Message
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant import head as head_module
from quaff_core.quant.capabilities import native_bf16
from quaff_core.quant.convert import convert_to_quaff
from quaff_core.quant.head import int8_head_grads
from quaff_core.quant.linear import QuaffLinear, quaff_layers
from quaff_core.quant.outlier_map import OutlierMap
from quaff_core.quant.primitives import QuantOps, get_quant_ops
from quaff_core.train_events import EventKind, TrainEvent
from quaff_core.training import runtime as runtime_module
from quaff_core.training.callbacks import NullCallbacks
from quaff_core.training.runtime import (
    COMPILE_MIN_PARAMS,
    COMPILE_MIN_STEPS,
    resolve_runtime,
    warm_up,
    worth_compiling,
)
from quaff_core.training.train import train

EXAMPLES = [
    Example("chat", i + 1, messages=(Message("user", f"Say {i}"), Message("assistant", f"{i}!")))
    for i in range(8)
]


class Events(NullCallbacks):
    def __init__(self) -> None:
        self.events: list[TrainEvent] = []

    def on_event(self, event: TrainEvent) -> None:
        self.events.append(event)

    def of(self, kind: EventKind) -> list[TrainEvent]:
        return [e for e in self.events if e.kind == kind]


def test_auto_resolves_for_the_device() -> None:
    runtime = resolve_runtime(TrainConfig(), "cpu")
    assert runtime.compute_dtype == ("bfloat16" if native_bf16("cpu") else "float32")
    # fp32: the tests' int8 path on AVX2
    assert runtime.int8_backend in ("int_mm", "onednn_s8", "fp32")
    assert runtime.kernel_reason.startswith("CPU ")
    assert runtime.compile_reason
    explicit = resolve_runtime(TrainConfig(compute_dtype="float32", compile=False), "cpu")
    assert (explicit.compute_dtype, explicit.compile) == ("float32", False)
    plain = resolve_runtime(TrainConfig(quantization="none", compile=True), "cpu")
    assert (plain.compile, plain.int8_backend) == (False, "none")


def test_auto_compiles_only_runs_that_repay_the_warm_up() -> None:
    assert not worth_compiling(100_000, 1000)
    assert not worth_compiling(COMPILE_MIN_PARAMS, 3)
    small = resolve_runtime(TrainConfig(), "cpu", n_params=100_000, total_steps=1000)
    assert small.compile is False
    forced = resolve_runtime(TrainConfig(compile=True), "cpu", n_params=100_000, total_steps=3)
    assert forced.compile is True
    assert forced.compile_reason == "compile on: as configured"
    n_params = 25_000_000  # ~0.6 s saved a step at 4 x 512 tokens: ~20 s over 33 steps
    short = resolve_runtime(TrainConfig(), "cpu", n_params=n_params, total_steps=COMPILE_MIN_STEPS)
    long = resolve_runtime(TrainConfig(), "cpu", n_params=n_params, total_steps=2000)
    assert short.compile is False
    assert "does not earn back" in short.compile_reason
    assert long.compile is (long.int8_backend not in ("dequant", "onednn_grad"))


@pytest.mark.parametrize("backend", ["dequant", "onednn_grad"])
def test_backends_with_a_dequantized_forward_never_compile(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setattr(runtime_module, "kernel_choice", lambda kind: (backend, f"{kind}: test"))
    long = resolve_runtime(TrainConfig(), "cpu", n_params=500_000_000, total_steps=5000)
    assert long.int8_backend == backend
    assert long.compile is False
    assert backend in long.compile_reason


def test_the_runtime_is_reported_and_returned(tmp_path: Path) -> None:
    calls = Events()
    config = TrainConfig(max_steps=1, batch_size=4, max_seq_length=48, compile=False)
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    (event,) = calls.of(EventKind.RUNTIME)
    assert result.runtime is not None
    assert event.data == result.runtime.to_dict()
    assert event.data["compile"] is False
    assert event.data["device"] == "cpu"


def test_a_compile_failure_falls_back_to_eager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(compile: bool) -> Any:
        if compile:
            raise RuntimeError("inductor: no compiler here")
        return quaff_core.quant.primitives._EAGER

    monkeypatch.setattr("quaff_core.quant.linear.get_quant_ops", broken)
    calls = Events()
    config = TrainConfig(max_steps=2, batch_size=4, max_seq_length=48, compile=True)
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    (fallback,) = calls.of(EventKind.COMPILE_FALLBACK)
    assert fallback.data["error"] == "RuntimeError"
    assert result.stopped == "completed"
    assert result.runtime is not None
    assert result.runtime.compile is False
    assert not calls.of(EventKind.WARMUP)


def test_a_nan_batch_in_training_leaves_later_steps_and_the_adapter_finite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One training forward sees NaN activations: the scales skip it (an event says so), later
    steps stay finite and the saved scale state holds no NaN."""
    original = QuaffLinear.forward
    poisoned = {"done": False}

    def forward(self: QuaffLinear, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.n_outliers and not poisoned["done"]:
            poisoned["done"] = True
            x = x.clone()
            x[..., self.outlier_idx] = float("nan")
        return original(self, x)

    monkeypatch.setattr(QuaffLinear, "forward", forward)
    calls = Events()
    config = TrainConfig(
        max_steps=4,
        batch_size=4,
        max_seq_length=48,
        compile=False,
        outlier_strategy="top_abs",
        outlier_max_ratio=0.05,
    )
    result = train("tiny-llama", EXAMPLES, tmp_path, config=config, callbacks=calls)
    assert poisoned["done"]
    (skipped,) = calls.of(EventKind.SCALE_UPDATES_SKIPPED)
    assert skipped.data["count"] >= 1
    assert result.adapter_dir is not None
    state = load_file(str(result.adapter_dir / "quaff_momentum.safetensors"))
    assert all(torch.isfinite(v.float()).all() for v in state.values())


def test_gradient_checkpointing_trains_and_updates_the_scales_once_per_step(
    tmp_path: Path,
) -> None:
    config = TrainConfig(
        max_steps=2,
        batch_size=4,
        max_seq_length=48,
        compile=False,
        gradient_checkpointing=True,
        outlier_strategy="top_abs",
        outlier_max_ratio=0.05,
    )
    plain = train(
        "tiny-llama",
        EXAMPLES,
        tmp_path / "a",
        config=config.__class__(**{**config.to_dict(), "gradient_checkpointing": False}),
    )
    checkpointed = train("tiny-llama", EXAMPLES, tmp_path / "b", config=config)
    assert checkpointed.runtime is not None
    assert checkpointed.runtime.gradient_checkpointing is True
    assert plain.adapter_dir is not None
    assert checkpointed.adapter_dir is not None

    # recomputation in backward must not move the outlier scales a second time
    for name in ("quaff_momentum.safetensors", "adapter_model.safetensors"):
        a = load_file(str(plain.adapter_dir / name))
        b = load_file(str(checkpointed.adapter_dir / name))
        for key in a:
            torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4)


def test_warm_up_is_skipped_when_no_layer_quantizes(tiny_llama: Any) -> None:
    """All layers on the dequant backend and no int8 head: there is nothing to compile, so no
    warm-up runs."""
    convert_to_quaff(tiny_llama, OutlierMap(layers={}), compile=True, head_grad=False)
    for layer in quaff_layers(tiny_llama).values():
        layer.backend_setting = "dequant"
    calls = Events()
    ids = torch.randint(0, 100, (1, 8))
    assert warm_up(tiny_llama, {"input_ids": ids, "labels": ids}, calls) is False
    assert calls.events == []
    layer = next(iter(quaff_layers(tiny_llama).values()))
    layer.backend_setting = "int_mm"
    assert warm_up(tiny_llama, {"input_ids": ids, "labels": ids}, calls) is True
    assert [e.kind for e in calls.events] == [EventKind.WARMUP]


def test_warm_up_compiles_the_int8_head_when_no_layer_quantizes(tiny_llama: Any) -> None:
    """All layers on the dequant backend but the head's input gradient on the int8 GEMM: its
    quantize pass is compiled in the warm-up."""
    convert_to_quaff(tiny_llama, OutlierMap(layers={}), compile=True)
    for layer in quaff_layers(tiny_llama).values():
        layer.backend_setting = "dequant"
    (head,) = int8_head_grads(tiny_llama)
    tiny_llama.get_output_embeddings().weight.requires_grad_(False)  # frozen, as under LoRA
    calls = Events()
    ids = torch.randint(0, 100, (1, 8))
    asked: list[bool] = []

    def ops(compile: bool) -> QuantOps:
        asked.append(compile)
        return get_quant_ops(compile)

    with mock.patch.object(head_module, "get_quant_ops", ops):
        assert warm_up(tiny_llama, {"input_ids": ids, "labels": ids}, calls) is True
    assert head.compile_setting is True
    assert asked == [True]  # the head ran, compiled
    assert [e.kind for e in calls.events] == [EventKind.WARMUP]
