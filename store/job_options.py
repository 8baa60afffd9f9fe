"""Resolve and range-check a job's options: defaults filled in, every bad value named by `param`."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from store.errors import InvalidRequestError

BASE_LORA_LEARNING_RATE = 2e-4
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

Checker = Callable[[str, Any], Any]


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid value for '{param}': {message}", param=param)


def _int(lo: int, hi: int) -> Checker:
    def check(param: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(param, f"expected an integer, got {value!r}")
        if not lo <= value <= hi:
            raise _bad(param, f"{value} is out of range; it must be between {lo} and {hi}")
        return value

    return check


def _float(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> Checker:
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"

    def check(param: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(param, f"expected a number, got {value!r}")
        number = float(value)
        low_ok = number > lo if lo_open else number >= lo
        high_ok = number < hi if hi_open else number <= hi
        if not (math.isfinite(number) and low_ok and high_ok):
            raise _bad(param, f"{value} is out of range; it must be in {left}{lo}, {hi}{right}")
        return number

    return check


def _choice(*options: Any) -> Checker:
    def check(param: str, value: Any) -> Any:
        if isinstance(value, bool) and not any(isinstance(o, bool) for o in options):
            raise _bad(param, f"expected one of {list(options)}, got {value!r}")
        if value not in options:
            raise _bad(param, f"expected one of {list(options)}, got {value!r}")
        return value

    return check


def _bool(param: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad(param, f"expected true or false, got {value!r}")
    return value


def _target_modules(param: str, value: Any) -> str | list[str]:
    if value == "all-linear":
        return "all-linear"
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and _MODULE.match(v) for v in value)
    ):
        return list(value)
    raise _bad(param, "expected 'all-linear' or a non-empty list of module names like 'q_proj'")


def _outlier_map_id(param: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("om-"):
        raise _bad(param, f"expected an outlier map id 'om-...', got {value!r}")
    return value


HYPERPARAMETERS: dict[str, tuple[Any, Checker]] = {
    "n_epochs": (3, _int(1, 50)),
    "batch_size": (4, _int(1, 256)),
    "learning_rate_multiplier": (1.0, _float(0.0, 100.0, lo_open=True)),
}
LORA: dict[str, tuple[Any, Checker]] = {
    "r": (16, _int(1, 256)),
    "alpha": (32.0, _float(0.0, 4096.0, lo_open=True)),
    "dropout": (0.0, _float(0.0, 1.0, hi_open=True)),
    "target_modules": ("all-linear", _target_modules),
}
QUANTIZATION: dict[str, tuple[Any, Checker]] = {
    "method": ("quaff", _choice("quaff", "none")),
    "outlier_strategy": ("mean_times", _choice("mean_times", "top_abs", "zscore", "static")),
    "outlier_threshold": (100.0, _float(0.0, 1e6, lo_open=True)),
    "outlier_max_ratio": (0.01, _float(0.0, 0.5, lo_open=True)),
    "momentum": (0.9, _float(0.0, 1.0, hi_open=True)),
    "compute_dtype": ("float32", _choice("float32", "bfloat16")),
    "compile": (False, _bool),
    "outlier_map": (None, _outlier_map_id),
}
TRAINING: dict[str, tuple[Any, Checker]] = {
    "learning_rate": (None, _float(0.0, 1.0, lo_open=True)),
    "lr_scheduler": ("cosine", _choice("cosine", "linear", "constant")),
    "warmup_ratio": (0.0, _float(0.0, 1.0, hi_open=True)),
    "max_seq_length": (1024, _int(16, 32768)),
    "gradient_accumulation_steps": (1, _int(1, 1024)),
    "weight_decay": (0.0, _float(0.0, 1.0)),
    "max_grad_norm": (1.0, _float(0.0, 1e6, lo_open=True)),
    "train_on_inputs": ("auto", _choice("auto", True, False)),
    "n_checkpoints": (1, _int(1, 100)),
    "n_evals": (0, _int(0, 1000)),
}


def resolve_group(
    name: str, raw: Any, spec: Mapping[str, tuple[Any, Checker]], *, auto_means_default: bool
) -> dict[str, Any]:
    """Fill defaults for one option group; unknown keys and bad values raise with their param."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _bad(name, f"expected an object, got {raw!r}")
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        raise InvalidRequestError(
            f"Unknown option '{name}.{unknown[0]}'; accepted options: {', '.join(spec)}",
            param=f"{name}.{unknown[0]}",
        )
    resolved: dict[str, Any] = {}
    for key, (default, check) in spec.items():
        value = raw.get(key)
        if value is None or (auto_means_default and value == "auto"):
            resolved[key] = default
        else:
            resolved[key] = check(f"{name}.{key}", value)
    return resolved


@dataclass(frozen=True)
class JobOptions:
    """Resolved options of a job: never 'auto', never missing."""

    hyperparameters: dict[str, Any]
    lora: dict[str, Any]
    quantization: dict[str, Any]
    training: dict[str, Any]


def _method_hyperparameters(method: Any) -> Any:
    if method is None:
        return None
    if not isinstance(method, Mapping):
        raise _bad("method", f"expected an object, got {method!r}")
    kind = method.get("type", "supervised")
    if kind != "supervised":
        raise InvalidRequestError(
            f"Invalid value for 'method.type': only 'supervised' is supported, got {kind!r}",
            param="method.type",
        )
    unknown = sorted(set(method) - {"type", "supervised"})
    if unknown:
        raise _bad(f"method.{unknown[0]}", "unknown field for a supervised method")
    supervised = method.get("supervised") or {}
    if not isinstance(supervised, Mapping):
        raise _bad("method.supervised", f"expected an object, got {supervised!r}")
    unknown = sorted(set(supervised) - {"hyperparameters"})
    if unknown:
        raise _bad(f"method.supervised.{unknown[0]}", "unknown field")
    return supervised.get("hyperparameters")


def resolve_options(body: Mapping[str, Any]) -> JobOptions:
    """Resolve hyperparameters (top level or `method`), `lora`, `quantization` and `training`."""
    from_method = _method_hyperparameters(body.get("method"))
    top = body.get("hyperparameters")
    if from_method and top:
        raise InvalidRequestError(
            "Give hyperparameters either at the top level or in 'method', not both.",
            param="hyperparameters",
        )
    name = "method.supervised.hyperparameters" if from_method else "hyperparameters"
    hyper = resolve_group(name, from_method or top, HYPERPARAMETERS, auto_means_default=True)
    lora = resolve_group("lora", body.get("lora"), LORA, auto_means_default=False)
    quant = resolve_group(
        "quantization", body.get("quantization"), QUANTIZATION, auto_means_default=False
    )
    training = resolve_group("training", body.get("training"), TRAINING, auto_means_default=False)
    if training["learning_rate"] is None:
        training["learning_rate"] = BASE_LORA_LEARNING_RATE * hyper["learning_rate_multiplier"]
    if quant["method"] == "none" and quant["outlier_map"] is not None:
        raise _bad("quantization.outlier_map", "an outlier map needs quantization method 'quaff'")
    return JobOptions(hyperparameters=hyper, lora=lora, quantization=quant, training=training)
