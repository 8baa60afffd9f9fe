"""llama.cpp's server flags follow the CPU: no weight repack where the CPU has AMX."""

from __future__ import annotations

import pytest

from quaff_core.models import llama_cpp


def test_amx_cpus_turn_the_weight_repack_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_cpp, "cpuinfo_flags", lambda: frozenset({"avx2", "amx_int8"}))
    assert llama_cpp.cpu_safe_args() == ("--no-repack",)
    monkeypatch.setattr(llama_cpp, "cpuinfo_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert llama_cpp.cpu_safe_args() == ()
