"""`OutlierMap`: per-layer outlier input channels found by calibration, saved as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "quaff-outlier-map"
VERSION = 1
PEFT_PREFIX = "base_model.model."
PEFT_BASE_SUFFIX = ".base_layer"


def normalise_layer_name(name: str) -> str:
    """Module name as on the unwrapped HF model: strip PEFT's `base_model.model.` prefix and the
    `.base_layer` suffix of a layer a PEFT tuner layer wraps."""
    while name.startswith(PEFT_PREFIX):
        name = name[len(PEFT_PREFIX) :]
    while name.endswith(PEFT_BASE_SUFFIX):
        name = name[: -len(PEFT_BASE_SUFFIX)]
    return name


@dataclass(frozen=True)
class Overlap:
    """Recall of one map's channels in another: per layer and overall (pooled over channels)."""

    per_layer: dict[str, float]
    overall: float


@dataclass
class OutlierMap:
    """Layer name -> sorted outlier channel indices, plus calibration metadata."""

    layers: dict[str, list[int]]
    in_features: dict[str, int] = field(default_factory=dict)
    model_id: str | None = None
    strategy: str = "mean_times"
    threshold: float = 100.0
    max_ratio: float = 0.01
    tokens_seen: int = 0

    def __post_init__(self) -> None:
        """Validate and normalise: sorted unique ints, names without PEFT prefixes."""
        layers: dict[str, list[int]] = {}
        for name, channels in self.layers.items():
            if not isinstance(name, str):
                raise TypeError(f"layer names must be str, got {name!r}")
            if any(isinstance(c, bool) or not isinstance(c, int) for c in channels):
                raise TypeError(f"layer {name!r}: channel indices must be ints, got {channels!r}")
            clean = sorted(set(channels))
            if clean and clean[0] < 0:
                raise ValueError(f"layer {name!r}: negative channel index {clean[0]}")
            width = self.in_features.get(name)
            if width is not None and clean and clean[-1] >= width:
                raise ValueError(f"layer {name!r}: channel {clean[-1]} >= in_features {width}")
            layers[normalise_layer_name(name)] = clean
        self.layers = layers
        self.in_features = {normalise_layer_name(k): int(v) for k, v in self.in_features.items()}
        if not 0.0 < self.max_ratio <= 1.0:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")
        if self.tokens_seen < 0:
            raise ValueError(f"tokens_seen must be >= 0, got {self.tokens_seen}")

    def channels(self, layer_name: str) -> list[int] | None:
        """Channels of a layer (name normalised), or None if the layer is not in the map."""
        return self.layers.get(normalise_layer_name(layer_name))

    @property
    def num_channels(self) -> int:
        """Total number of outlier channels over all layers."""
        return sum(len(c) for c in self.layers.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see `save`)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_id": self.model_id,
            "strategy": self.strategy,
            "threshold": self.threshold,
            "max_ratio": self.max_ratio,
            "tokens_seen": self.tokens_seen,
            "layers": {k: list(v) for k, v in sorted(self.layers.items())},
            "in_features": dict(sorted(self.in_features.items())),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutlierMap:
        """Parse a document written by `to_dict`; ValueError on a wrong format or version."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a Quaff outlier map: format={data.get('format')!r}")
        if data.get("version") != VERSION:
            raise ValueError(f"unsupported outlier map version {data.get('version')!r}")
        return cls(
            layers={str(k): [int(c) for c in v] for k, v in data["layers"].items()},
            in_features={str(k): int(v) for k, v in data.get("in_features", {}).items()},
            model_id=data.get("model_id"),
            strategy=str(data["strategy"]),
            threshold=float(data["threshold"]),
            max_ratio=float(data["max_ratio"]),
            tokens_seen=int(data["tokens_seen"]),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the map as JSON (atomically: temp file then rename)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        os.replace(tmp, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OutlierMap:
        """Read a map written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def overlap(self, other: OutlierMap) -> Overlap:
        """Recall of this map's channels in `other`, per layer and pooled (1.0 where none)."""
        per_layer: dict[str, float] = {}
        hits = total = 0
        for name, channels in self.layers.items():
            found = set(other.layers.get(name, ()))
            n_hit = sum(1 for c in channels if c in found)
            per_layer[name] = n_hit / len(channels) if channels else 1.0
            hits += n_hit
            total += len(channels)
        return Overlap(per_layer=per_layer, overall=hits / total if total else 1.0)
