"""OutlierMap: JSON format, validation, name normalisation and overlap (recall)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quaff_core.quant.outlier_map import OutlierMap


def make_map(**overrides: object) -> OutlierMap:
    """A two-layer map."""
    fields: dict = {
        "layers": {"model.layers.0.mlp.up_proj": [5, 1], "model.layers.0.mlp.down_proj": []},
        "in_features": {"model.layers.0.mlp.up_proj": 64, "model.layers.0.mlp.down_proj": 176},
        "model_id": "tiny",
        "tokens_seen": 32,
    }
    fields.update(overrides)
    return OutlierMap(**fields)


def test_save_writes_documented_json(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    make_map().save(path)
    doc = json.loads(path.read_text())
    assert set(doc) == {
        "format", "version", "model_id", "strategy", "threshold", "max_ratio",
        "tokens_seen", "layers", "in_features",
    }  # fmt: skip
    assert doc["format"] == "quaff-outlier-map"
    assert doc["version"] == 1
    assert doc["layers"]["model.layers.0.mlp.up_proj"] == [1, 5]
    assert doc["in_features"]["model.layers.0.mlp.down_proj"] == 176
    assert doc["strategy"] == "mean_times"
    assert doc["tokens_seen"] == 32


def test_load_round_trip(tmp_path: Path) -> None:
    original = make_map(strategy="top_abs", threshold=3.0, max_ratio=0.05)
    original.save(tmp_path / "m.json")
    assert OutlierMap.load(tmp_path / "m.json") == original


def test_load_rejects_other_documents(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(ValueError, match="not a Quaff outlier map"):
        OutlierMap.load(path)
    doc = make_map().to_dict() | {"version": 99}
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="version"):
        OutlierMap.load(path)


def test_peft_prefix_is_normalised() -> None:
    m = make_map(layers={"base_model.model.model.layers.0.mlp.up_proj": [3]}, in_features={})
    assert m.layers == {"model.layers.0.mlp.up_proj": [3]}
    assert m.channels("base_model.model.model.layers.0.mlp.up_proj") == [3]
    assert m.channels("model.layers.9.mlp.up_proj") is None


def test_peft_base_layer_suffix_is_normalised() -> None:
    name = "base_model.model.model.layers.0.mlp.up_proj.base_layer"
    m = make_map(layers={name: [3]}, in_features={name: 64})
    assert m.layers == {"model.layers.0.mlp.up_proj": [3]}
    assert m.in_features == {"model.layers.0.mlp.up_proj": 64}
    assert m.channels(name) == [3]


def test_validation_names_bad_values() -> None:
    with pytest.raises(ValueError, match="in_features 64"):
        make_map(layers={"model.layers.0.mlp.up_proj": [64]})
    with pytest.raises(ValueError, match="negative"):
        make_map(layers={"a": [-1]}, in_features={})
    with pytest.raises(TypeError, match="ints"):
        make_map(layers={"a": [1.5]}, in_features={})
    with pytest.raises(ValueError, match="max_ratio"):
        make_map(max_ratio=0.0)


def test_overlap_recall_per_layer_and_overall() -> None:
    a = OutlierMap(layers={"x": [1, 2, 3, 4], "y": [7], "z": []})
    b = OutlierMap(layers={"x": [1, 2, 9], "y": [8]})
    result = a.overlap(b)
    assert result.per_layer == {"x": 0.5, "y": 0.0, "z": 1.0}
    assert result.overall == pytest.approx(2 / 5)
    assert a.overlap(a).overall == 1.0
    assert b.overlap(a).per_layer["x"] == pytest.approx(2 / 3)
