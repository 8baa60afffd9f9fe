"""bench/ladder.py: the peer follows the host, the rungs build, and the table names the class."""

from __future__ import annotations

import pytest

from bench import ladder
from bench.step_models import build_base
from quaff_core.quant import capabilities


def test_the_peers_are_bf16_only_where_bf16_is_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ladder, "native_bf16", lambda device: True)
    assert ladder.peer_candidates("cpu") == ["bf16-base", "bf16-autocast"]
    monkeypatch.setattr(ladder, "native_bf16", lambda device: False)
    assert ladder.peer_candidates("cpu") == ["fp32"]


def test_the_rung_takes_the_faster_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = {"bf16-base": [2.0, 2.1], "bf16-autocast": [2.5, 2.6], "quaff": [1.0, 1.1]}
    timing = {"times": steps, "last_loss": dict.fromkeys(steps, 1.0)}
    monkeypatch.setattr(ladder, "time_modes", lambda args, model: timing)
    args = ladder.parse_args(["--memory-shapes", "none"])
    row = ladder.run_rung(args, "qwen0.5b", "4x256", ["bf16-base", "bf16-autocast"])
    assert row["peer"] == "bf16-base"
    assert row["speedup"] == pytest.approx(2.05 / 1.05)
    assert row["peer_steps_s"] == {"bf16-base": 2.05, "bf16-autocast": 2.55}


@pytest.mark.parametrize(
    ("name", "hidden", "vocab"), [("qwen0.5b", 896, 151936), ("llama1b", 2048, 128256)]
)
def test_shape_rungs_have_the_real_widths(name: str, hidden: int, vocab: int) -> None:
    model = build_base(name, 1)
    assert model.config.hidden_size == hidden
    assert model.config.vocab_size == vocab
    assert model.config.num_hidden_layers == 1


def test_table_names_the_machine_class_and_the_ratio() -> None:
    row = {
        "model": "llama1b", "shape": "4x256", "peer": "fp32", "peer_step_s": 3.0,
        "quaff_step_s": 2.0, "speedup": 1.5, "target": 1.5,
        "last_loss": {"fp32": 10.0, "quaff": 10.01},
        "net_peak_mib": {"fp32": 1000.0, "quaff": 450.0}, "quaff_net_vs_fp32": 0.45,
        "extra_speedups": {"quaff-onednn": 1.2},
    }  # fmt: skip
    header = capabilities.device_class("cpu")
    text = ladder.table([row], header)
    assert text.startswith("CPU ")
    assert "**1.50x**" in text
    assert "1000 / 1000 / 450" in text
    assert "| 0.45 |" in text
    assert "llama1b 4x256 quaff-onednn: 1.20x" in text


def test_cpu_class_is_one_of_the_known_classes() -> None:
    known = {"AMX", "AVX512-VNNI/BF16", "AVX512-VNNI", "AVX-VNNI", "AVX2", "other"}
    assert capabilities.cpu_class() in known
