"""A job's options from its request: defaults filled in, the trainer's `TrainConfig` built.

A value is checked once per boundary: the API's body (`api/job_body.py`) checks each field
against the option spec, and `TrainConfig` checks its own fields. So nothing here checks a value
again. This module places the option objects (top level or under `method`), refuses unknown and
renamed keys and the combinations no single field sees, fills in the defaults ("auto" included)
and turns what the config refuses into a 400 naming the request's param (callers that skip the
API, such as tests and benchmarks, get the config's verdict that way). The stored options are
what the user asked for: a learning rate left out stays null, derived from the multiplier where
a config is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quaff_core.options.spec import (
    API_GROUPS,
    AUTO,
    RENAMED,
    Option,
    OptionError,
    group_options,
    option,
)
from quaff_core.options.train_config import TrainConfig, config_from_api
from store.errors import InvalidRequestError

# hyperparameters of one method only: refused for another, and not stored with it
METHOD_ONLY = {
    "beta": "dpo",
    "compute_multiplier": "reinforcement",
    "eval_interval": "reinforcement",
    "eval_samples": "reinforcement",
    "reasoning_effort": "reinforcement",
}


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid value for '{param}': {message}", param=param)


@dataclass(frozen=True)
class JobOptions:
    """Resolved options of a job, as stored on it: never 'auto', never missing."""

    hyperparameters: dict[str, Any]
    lora: dict[str, Any]
    peft: dict[str, Any]
    quantization: dict[str, Any]
    training: dict[str, Any]
    seed: int
    config: TrainConfig
    method: str = "supervised"
    grader: dict[str, Any] | None = None

    def group(self, name: str) -> dict[str, Any]:
        """One option object by its API name."""
        groups: dict[str, dict[str, Any]] = {
            "hyperparameters": self.hyperparameters,
            "lora": self.lora,
            "peft": self.peft,
            "quantization": self.quantization,
            "training": self.training,
        }
        return groups[name]


def _filled(opt: Option, raw: Mapping[str, Any]) -> Any:
    """The request's value of one option, or its default when absent or "auto" (a nullable
    option left out is null: derived later). The value itself was checked at the edge."""
    field = str(opt.field)
    if field not in raw:
        return None if opt.nullable else opt.default
    value = raw[field]
    return opt.default if opt.auto and value == AUTO else value


def _group(group: str, raw: Any, prefix: str) -> dict[str, Any]:
    """One option object with its defaults filled in; unknown and renamed keys name their param."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise _bad(prefix, f"expected an object, got {str(raw)[:40]!r}")
    known = group_options(group)
    names = {opt.field for opt in known}
    unknown = sorted(str(k) for k in raw if k not in names)
    renamed = [k for k in unknown if f"{group}.{k}" in RENAMED]
    if renamed:
        old = f"{group}.{renamed[0]}"
        raise InvalidRequestError(
            f"'{old}' was renamed: use '{RENAMED[old]}'", param=f"{prefix}.{renamed[0]}"
        )
    if unknown:
        raise InvalidRequestError(
            f"Unknown option '{prefix}.{unknown[0][:64]}'; accepted options: "
            f"{', '.join(sorted(str(n) for n in names))}",
            param=f"{prefix}.{unknown[0][:64]}",
        )
    return {str(opt.field): _filled(opt, raw) for opt in known}


def _method(method: Any) -> tuple[Any, Any, Any]:
    """OpenAI's `method` object: its type, the hyperparameters under `method.<type>` (the
    type's value is the config's to check) and a reinforcement method's grader."""
    if method is None:
        return "supervised", None, None
    if not isinstance(method, Mapping):
        raise _bad("method", f"expected an object, got {str(method)[:40]!r}")
    kind = method.get("type", "supervised")
    unknown = sorted(str(k) for k in method if k not in ("type", kind))
    if unknown:
        raise _bad(f"method.{unknown[0][:64]}", f"unknown field for a {kind} method")
    inner = (method.get(kind) if isinstance(kind, str) else None) or {}
    if not isinstance(inner, Mapping):
        raise _bad(f"method.{kind}", f"expected an object, got {str(inner)[:40]!r}")
    fields = ("hyperparameters", "grader") if kind == "reinforcement" else ("hyperparameters",)
    unknown = sorted(str(k) for k in inner if k not in fields)
    if unknown:
        raise _bad(f"method.{kind}.{unknown[0][:64]}", "unknown field")
    if kind == "reinforcement" and inner.get("grader") is None:
        raise InvalidRequestError(
            "A reinforcement method needs 'method.reinforcement.grader'.",
            param="method.reinforcement.grader",
        )
    return kind, inner.get("hyperparameters"), inner.get("grader")


def _hyperparameters(body: Mapping[str, Any]) -> tuple[Any, Any, str]:
    """The method type, the raw hyperparameters and the prefix their params are named with."""
    kind, from_method, _grader = _method(body.get("method"))
    top = body.get("hyperparameters")
    if from_method and top:
        raise InvalidRequestError(
            "Give hyperparameters either at the top level or in 'method', not both.",
            param="hyperparameters",
        )
    prefix = f"method.{kind}.hyperparameters" if from_method else "hyperparameters"
    raw = from_method or top
    if isinstance(raw, Mapping):
        for key, only in METHOD_ONLY.items():
            if key in raw and kind != only:
                raise _bad(
                    f"{prefix}.{key}", f"a {only} hyperparameter; set method.type to '{only}'"
                )
    return kind, raw, prefix


def _one_learning_rate(hyper: Any, training: Any, hyper_prefix: str) -> None:
    """A learning rate multiplier and an absolute learning rate together: say which wins, 400."""
    multiplier = hyper.get("learning_rate_multiplier") if isinstance(hyper, Mapping) else None
    absolute = training.get("learning_rate") if isinstance(training, Mapping) else None
    if multiplier not in (None, AUTO) and absolute is not None:
        raise InvalidRequestError(
            f"Give either '{hyper_prefix}.learning_rate_multiplier' or 'training.learning_rate', "
            "not both: the absolute rate would override the multiplier.",
            param="training.learning_rate",
        )


def _config(values: dict[str, Any], hyper_prefix: str) -> TrainConfig:
    """The trainer's config, which checks every value; what it refuses is a 400 naming the
    request's param."""
    try:
        return config_from_api(values)
    except OptionError as exc:
        param = exc.option.api or exc.option.name
        if param.startswith("hyperparameters."):
            param = hyper_prefix + param.removeprefix("hyperparameters")
        raise _bad(param, exc.reason) from None


def _check_outlier_map(groups: Mapping[str, Mapping[str, Any]], config: TrainConfig) -> None:
    """An outlier map is reused by a Quaff base only."""
    if config.quantization == "none" and groups["quantization"]["outlier_map"] is not None:
        raise _bad("quantization.outlier_map", "an outlier map needs quantization method 'quaff'")


def resolve_options(body: Mapping[str, Any]) -> JobOptions:
    """The method, hyperparameters (top level or in `method`), lora, peft, quantization,
    training and seed of a request, defaults filled in, with the `TrainConfig` they make."""
    kind, raw_hyper, hyper_prefix = _hyperparameters(body)
    raws = {group: body.get(group) for group in API_GROUPS}
    raws["hyperparameters"] = raw_hyper
    prefixes = {group: group for group in API_GROUPS}
    prefixes["hyperparameters"] = hyper_prefix
    groups = {g: _group(g, raws[g], prefixes[g]) for g in API_GROUPS}
    _one_learning_rate(raw_hyper, body.get("training"), hyper_prefix)
    seed = body.get("seed")
    values = {f"{g}.{k}": v for g, fields in groups.items() for k, v in fields.items()}
    values["seed"] = option("seed").default if seed is None else seed
    values["method.type"] = kind
    config = _config(values, hyper_prefix)
    _check_outlier_map(groups, config)
    if isinstance(config.lora_target_modules, tuple):
        groups["lora"]["target_modules"] = list(config.lora_target_modules)
    for key, only in METHOD_ONLY.items():
        if config.method != only:
            groups["hyperparameters"].pop(key)
    return JobOptions(
        hyperparameters=groups["hyperparameters"],
        lora=groups["lora"],
        peft=groups["peft"],
        quantization=groups["quantization"],
        training=groups["training"],
        seed=config.seed,
        config=config,
        method=config.method,
        grader=_method(body.get("method"))[2],
    )


def stored_config(
    groups: Mapping[str, Mapping[str, Any]], seed: int, method: str = "supervised"
) -> TrainConfig:
    """The `TrainConfig` of a stored job (method, option objects, seed)."""
    values = {f"{g}.{k}": v for g in API_GROUPS for k, v in (groups.get(g) or {}).items()}
    values["seed"] = seed
    values["method.type"] = method
    return config_from_api(values)
