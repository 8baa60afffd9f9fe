"""Command-line flags derived from the option spec, and the `TrainConfig` they build."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from cli.common import CliError
from quaff_core.options.spec import ALL_LINEAR, AUTO, BY_NAME, OPTIONS, Option, OptionError
from quaff_core.options.train_config import TrainConfig


def _bool_or_auto(value: str) -> bool | str:
    """`auto`, `true` or `false` (train_on_inputs)."""
    lowered = value.lower()
    if lowered not in (AUTO, "true", "false"):
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {value!r}")
    return AUTO if lowered == AUTO else lowered == "true"


def _modules(value: str) -> str | tuple[str, ...]:
    """`all-linear` or comma-separated module names."""
    if value == ALL_LINEAR:
        return ALL_LINEAR
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _help(opt: Option) -> str:
    """The spec's help plus the default and the range."""
    shown = ",".join(opt.default) if isinstance(opt.default, tuple) else opt.default
    extra = f"default {shown}" + (f"; {opt.range_text()}" if opt.range_text() else "")
    return f"{opt.help} ({extra})"


def add_flag(parser: argparse.ArgumentParser, opt: Option) -> None:
    """Add the flag of one option; unset flags stay None (keep the default or resumed value)."""
    if opt.cli is None:
        raise ValueError(f"option {opt.name} has no command-line flag")
    kwargs: dict[str, Any] = {"dest": opt.name, "default": None, "help": _help(opt)}
    if opt.kind == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    elif opt.kind == "int":
        kwargs["type"] = int
    elif opt.kind == "float":
        kwargs["type"] = float
    elif opt.kind == "modules":
        kwargs["type"] = _modules
        kwargs["metavar"] = "NAMES"
    elif opt.kind == "choice" and any(isinstance(c, bool) for c in opt.choices):
        kwargs["type"] = _bool_or_auto
        kwargs["metavar"] = "{" + ",".join(str(c).lower() for c in opt.choices) + "}"
    elif opt.kind == "choice":
        kwargs["choices"] = list(opt.choices)
    parser.add_argument(opt.cli, **kwargs)


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """Flags of the named options (default: every library option that has a flag)."""
    chosen = [BY_NAME[n] for n in names] if names is not None else OPTIONS
    for opt in chosen:
        if opt.cli is not None and opt.library:
            add_flag(parser, opt)


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options set on the command line, by config field name."""
    return {
        opt.name: getattr(args, opt.name)
        for opt in OPTIONS
        if opt.cli is not None and getattr(args, opt.name, None) is not None
    }


def build_config(values: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> TrainConfig:
    """`TrainConfig` of `base` (e.g. a resumed run's options) updated by `values`; CliError
    names the flag of a refused value."""
    merged = {**(base or {}), **values}
    try:
        return TrainConfig.from_dict(merged)
    except OptionError as exc:
        flag = exc.option.cli or exc.option.name
        raise CliError(f"{flag}: {exc.reason}") from exc
