"""bench/layer.py: every backend times a layer, and unknown backends are refused."""

from __future__ import annotations

import pytest

from bench import layer


def test_every_backend_times_a_layer() -> None:
    best = layer.layer_times(64, 48, rows=16, backends=["dequant", "fp32"], rounds=1)
    assert set(best) == {layer.PEER, "fp32", "dequant"}
    assert all(0 < t < 60 for t in best.values())


def test_a_bf16_peer_times_bf16_layers() -> None:
    best = layer.layer_times(
        64, 48, rows=16, backends=["dequant"], rounds=1, dtype=layer.DTYPES["bf16"]
    )
    assert set(best) == {layer.PEER, "dequant"}
    assert layer.parse_args(["--dtype", "bf16", "--compile"]).compile


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(SystemExit):
        layer.parse_args(["--backends", "turbo"])
