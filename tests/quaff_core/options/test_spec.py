"""The option spec is the one truth: the API, the CLI and the trainer accept and refuse alike."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from api.job_body import JobCreate
from cli.common import CliError
from cli.options import add_flags, build_config, flag_values
from quaff_core.options.field import Option
from quaff_core.options.spec import AUTO, OPTIONS, OptionError, markdown_table
from quaff_core.options.train_config import TrainConfig
from quaff_core.quant.linear import QuaffLinear
from store.errors import InvalidRequestError
from store.job_options import resolve_options

SKIP = object()


def _edges(opt: Option) -> list[Any]:
    """Values at and around the option's edges, plus wrong types."""
    if opt.kind in ("int", "float"):
        low, high = opt.low, opt.high
        assert low is not None
        assert high is not None
        step = 1 if opt.kind == "int" else max(1e-9, (high - low) * 1e-6)
        values: list[Any] = [low, high, low - step, high + step, True, "3", math.nan, 10**400]
        if opt.kind == "int":
            values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
            values += [low + 0.5, float(low)]
        else:
            values += [math.inf, (low + high) / 2]
        return values
    if opt.kind == "bool":
        return [True, False, 1, "yes"]
    if opt.kind == "choice":
        return [*opt.choices, "bogus", 1]
    if opt.kind == "modules":
        return ["all-linear", ["q_proj", "v_proj"], [], ["../x"], "attention", [1]]
    return ["om-abc123", "file-1", 5]


GRADER = {"type": "string_check", "name": "g", "input": "a", "reference": "a", "operation": "eq"}


def _api_refusal(opt: Option, value: Any) -> str | None:
    """The param that POST /v1/fine_tuning/jobs refuses `value` with: the body's field check,
    then the store's option resolution (None: accepted)."""
    assert opt.api is not None
    body: dict[str, Any] = {"model": "tiny-llama", "training_file": "file-1"}
    if opt.group is None:
        body[opt.api] = value
    else:
        body[opt.group] = {opt.field: value}
    if opt.name == "dpo_beta":
        body["method"] = {"type": "dpo"}  # a DPO hyperparameter: refused for supervised jobs
    if opt.name.startswith("rft_") and opt.group == "hyperparameters":
        body["method"] = {"type": "reinforcement"}  # ditto for reinforcement
    if body.get("method", {}).get("type") == "reinforcement":
        body["method"]["reinforcement"] = {"grader": GRADER}
    try:
        request = JobCreate.model_validate(body).request()
    except ValidationError as exc:
        return ".".join(str(part) for part in exc.errors()[0]["loc"])
    try:
        resolve_options(request)
    except InvalidRequestError as exc:  # always a 400
        return exc.param
    return None


def _library_refusal(opt: Option, value: Any) -> OptionError | None:
    """What `TrainConfig` raises for `value` (None: accepted)."""
    try:
        TrainConfig(**{opt.name: value})
    except OptionError as exc:
        return exc
    return None


def _cli_argv(opt: Option, value: Any) -> list[str] | object:
    """The flags that pass `value` on the command line (SKIP when none can)."""
    assert opt.cli is not None
    if opt.kind == "bool":
        if not isinstance(value, bool):
            return SKIP
        return [opt.cli] if value else ["--no-" + opt.cli.removeprefix("--")]
    if opt.kind == "modules":
        if value == "all-linear":
            return [opt.cli, value]
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return [opt.cli, ",".join(value)]
        return SKIP
    if isinstance(value, list):
        return SKIP
    if opt.kind in ("int", "float") and isinstance(value, bool | str):
        return SKIP  # the command line is text: "3" there is the number 3
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return [opt.cli, text]


def _cli_refusal(argv: list[str]) -> str | None:
    """Why `quaff train`'s flags or config refuse the value (None: accepted)."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv)
    except (argparse.ArgumentError, SystemExit) as exc:
        return f"{argv[0]}: {exc}"
    try:
        build_config(flag_values(args))
    except CliError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("opt", OPTIONS, ids=[o.name for o in OPTIONS])
def test_every_layer_accepts_and_refuses_the_same_values(opt: Option) -> None:
    checked = 0
    for value in _edges(opt):
        if (opt.auto and value == AUTO) or value is None:
            continue
        verdicts: dict[str, bool] = {}
        if opt.api is not None:
            api = _api_refusal(opt, value)
            verdicts["api"] = api is None
            assert api in (None, opt.api), (opt.name, value, api)
        if opt.library:
            library = _library_refusal(opt, value)
            verdicts["library"] = library is None
            assert library is None or library.option is opt
        if opt.cli is not None:
            argv = _cli_argv(opt, value)
            if argv is not SKIP:
                assert isinstance(argv, list)
                cli = _cli_refusal(argv)
                verdicts["cli"] = cli is None
                assert cli is None or cli.startswith(f"{opt.cli}: "), cli
        assert len(set(verdicts.values())) <= 1, (opt.name, value, verdicts)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("opt", OPTIONS, ids=[o.name for o in OPTIONS])
def test_defaults_are_accepted(opt: Option) -> None:
    if opt.default is not None:
        assert opt.check(opt.default) == opt.default
    if opt.library:
        assert getattr(TrainConfig(), opt.name) == opt.default


def test_config_fields_are_the_library_options() -> None:
    fields = set(TrainConfig.__dataclass_fields__)
    assert fields == {o.name for o in OPTIONS if o.library}


def test_the_former_drift_cases_agree() -> None:
    """Accepted by the API and then refused by training, or the other way round, until now."""
    for body in (
        {"lora": {"alpha": 1.5}},
        {"lora": {"dropout": 0.995}},
        {"training": {"warmup_ratio": 0.995}},
        {"training": {"max_grad_norm": 0}},
    ):
        config = resolve_options(body).config
        assert TrainConfig(**config.to_dict()) == config
    for body, param in (
        ({"training": {"max_seq_length": 8}}, "training.max_seq_length"),
        ({"quantization": {"outlier_max_ratio": 0.8}}, "quantization.outlier_max_ratio"),
    ):
        with pytest.raises(InvalidRequestError) as exc:
            resolve_options(body)
        assert exc.value.param == param
    out_of_range: tuple[tuple[str, Any], ...] = (("max_seq_length", 8), ("outlier_max_ratio", 0.8))
    for name, value in out_of_range:
        with pytest.raises(OptionError):
            TrainConfig(**{name: value})
    # the outlier-scale weight: one range, [0, 1], in the API, the config and the layer

    for beta in (0.0, 1.0):
        config = resolve_options({"quantization": {"scale_beta": beta}}).config
        assert QuaffLinear(8, 8, scale_beta=config.scale_beta).scale_beta == beta


def test_a_renamed_option_names_its_new_name() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        resolve_options({"quantization": {"momentum": 0.9}})
    assert exc.value.param == "quantization.momentum"
    assert "quantization.scale_beta" in exc.value.message


def test_the_docs_table_is_generated_from_the_spec() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "api.md"
    assert markdown_table() in docs.read_text(encoding="utf-8"), (
        "docs/api.md is out of date: paste `python -m quaff_core.options.spec` into it"
    )
