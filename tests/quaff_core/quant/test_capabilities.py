"""Resolution of the engine's 'auto' settings."""

from __future__ import annotations

import pytest
import torch

from quaff_core.quant import capabilities as runtime
from tests.quaff_core.conftest import QUAFF_DEVICES


def test_explicit_settings_pass_through() -> None:
    assert runtime.resolve_compute_dtype(torch.bfloat16, "cpu") == torch.bfloat16
    assert runtime.resolve_compute_dtype(None, "cpu") is None
    assert runtime.resolve_compile(False, "cpu") is False
    assert runtime.resolve_compile(True, "cpu") is True


@pytest.mark.parametrize("device", QUAFF_DEVICES)
def test_auto_resolves_to_a_supported_choice(device: str) -> None:
    dtype = runtime.resolve_compute_dtype("auto", device)
    assert dtype in (torch.float32, torch.bfloat16)
    assert dtype == (torch.bfloat16 if runtime.native_bf16(device) else torch.float32)
    assert isinstance(runtime.resolve_compile("auto", device), bool)
    assert runtime.int8_backend(device) in ("int_mm", "onednn_s8", "onednn_grad", "dequant")


def test_cuda_always_uses_int_mm() -> None:
    assert runtime.int8_backend("cuda") == "int_mm"


def test_cpu_int8_backend_follows_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime.kernel_choice.cache_clear()
    runtime.cpu_class.cache_clear()
    monkeypatch.setattr(runtime, "_cpu_flag", lambda name: name == "vnni")
    assert runtime.int8_backend("cpu") == "int_mm"
    runtime.kernel_choice.cache_clear()
    runtime.cpu_class.cache_clear()
    monkeypatch.setattr(runtime, "_cpu_flag", lambda name: False)
    monkeypatch.setattr(runtime, "cpuinfo_flags", lambda: frozenset())  # no AVX-VNNI either
    monkeypatch.setattr(runtime, "_cpu_probe", lambda kind: 0.05)  # a scalar-loop _int_mm
    assert runtime.int8_backend("cpu") == "dequant"
    runtime.kernel_choice.cache_clear()
    runtime.cpu_class.cache_clear()


def test_cpu_bf16_follows_flags_or_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_cpu_flag", lambda name: name == "amx_tile")
    assert runtime.native_bf16("cpu")
    monkeypatch.setattr(runtime, "_cpu_flag", lambda name: False)
    monkeypatch.setattr(runtime, "_cpu_probe", lambda kind: 2.0)
    assert runtime.native_bf16("cpu")
    monkeypatch.setattr(runtime, "_cpu_probe", lambda kind: 0.2)
    assert runtime.resolve_compute_dtype("auto", "cpu") == torch.float32


def test_rejects_unknown_settings() -> None:
    with pytest.raises(ValueError, match="compute_dtype"):
        runtime.resolve_compute_dtype("fast", "cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating"):
        runtime.resolve_compute_dtype(torch.int8, "cpu")
    with pytest.raises(ValueError, match="compile"):
        runtime.resolve_compile("yes", "cpu")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("length", "max_length", "expected"),
    [(1, 1024, 64), (64, 1024, 64), (65, 1024, 128), (1000, 1000, 1000), (1030, 1000, 1030)],
)
def test_bucket_length(length: int, max_length: int, expected: int) -> None:
    assert runtime.bucket_length(length, max_length) == expected


def test_pad_to_bucket_pads_every_sequence_field() -> None:
    batch = {
        "input_ids": torch.ones(2, 70, dtype=torch.long),
        "attention_mask": torch.ones(2, 70, dtype=torch.long),
        "labels": torch.ones(2, 70, dtype=torch.long),
    }
    out = runtime.pad_to_bucket(batch, pad_token_id=7, max_length=512)
    assert {k: tuple(v.shape) for k, v in out.items()} == dict.fromkeys(batch, (2, 128))
    assert int(out["input_ids"][0, -1]) == 7
    assert int(out["attention_mask"][0, 70:].sum()) == 0
    assert bool((out["labels"][:, 70:] == -100).all())


@pytest.mark.parametrize("kind", ["bf16", "int8"])
def test_probe_leaves_the_global_rng_alone(kind: str) -> None:
    runtime._cpu_probe.cache_clear()
    state = torch.get_rng_state()
    runtime._cpu_probe(kind)
    assert torch.equal(torch.get_rng_state(), state)
