"""One training option: where it lives, what it accepts, how it is checked (torch-free)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["int", "float", "bool", "choice", "modules", "map_id"]
ALL_LINEAR = "all-linear"
_BOUNDS = re.compile(r"^([\[(])\s*([^,\s]+)\s*,\s*([^\]\s)]+)\s*([\])])$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_MAP_ID = re.compile(r"^om-[A-Za-z0-9_-]{1,36}$")
WIRE_TYPES = {
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "choice": "string",
    "modules": "string_list",
    "map_id": "string",
}


class OptionError(ValueError):
    """A value an option refuses; `option` names it (its API `param`, CLI flag, config field)."""

    def __init__(self, option: Option, message: str) -> None:
        super().__init__(f"{option.name}: {message}")
        self.option = option
        self.reason = message


@dataclass(frozen=True)
class Option:
    """One option: where it lives (`TrainConfig` field, API param, CLI flag) and what it accepts.

    `api` is the dotted request path (`lora.r`, `seed`), `cli` the flag of `quaff train`
    (None: not a flag), `library` whether it is a `TrainConfig` field. Numbers are range-checked
    against `low`/`high` (open ends with `low_open`/`high_open`); `auto` lets the API send "auto"
    for the default (OpenAI's hyperparameters); `nullable` lets the API send null for "derived".
    """

    name: str
    kind: Kind
    default: Any
    help: str
    api: str | None = None
    cli: str | None = None
    bounds: str = ""
    choices: tuple[Any, ...] = ()
    library: bool = True
    auto: bool = False
    nullable: bool = False

    def __post_init__(self) -> None:
        """Parse `bounds` ("[1, 256]", "(0, 1)") once; refuse a malformed spec entry."""
        if self.bounds and not _BOUNDS.match(self.bounds):
            raise ValueError(f"option {self.name}: bounds {self.bounds!r} is not like '[0, 1)'")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"option {self.name}: a choice option needs choices")

    @property
    def low(self) -> float | None:
        """The lower bound (None: unbounded)."""
        match = _BOUNDS.match(self.bounds)
        return float(match.group(2)) if match else None

    @property
    def high(self) -> float | None:
        """The upper bound (None: unbounded)."""
        match = _BOUNDS.match(self.bounds)
        return float(match.group(3)) if match else None

    @property
    def low_open(self) -> bool:
        """Whether the lower bound itself is refused."""
        return self.bounds.startswith("(")

    @property
    def high_open(self) -> bool:
        """Whether the upper bound itself is refused."""
        return self.bounds.endswith(")")

    @property
    def group(self) -> str | None:
        """The API object the option sits in (`lora`), or None for a top-level field."""
        if self.api is None or "." not in self.api:
            return None
        return self.api.split(".", 1)[0]

    @property
    def field(self) -> str | None:
        """The key inside its API object (`r` for `lora.r`)."""
        return None if self.api is None else self.api.rsplit(".", 1)[-1]

    def range_text(self) -> str:
        """`[1, 256]`, `(0, 1)`, `one of a, b` or '' when unconstrained."""
        if self.kind == "choice":
            return "one of " + ", ".join(show(c) for c in self.choices)
        return self.bounds

    def check(self, value: Any) -> Any:
        """The value normalised (ints stay ints, lists become tuples); OptionError otherwise."""
        if self.nullable and value is None:
            return None
        if self.kind in ("int", "float"):
            return self._check_number(value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise OptionError(self, f"expected true or false, got {value!r}")
            return value
        if self.kind == "choice":
            return self._check_choice(value)
        if self.kind == "modules":
            return _check_modules(self, value)
        return _check_map_id(self, value)

    def _check_number(self, value: Any) -> int | float:
        """An int (kind int) or a finite number within the range."""
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise OptionError(self, f"expected an integer, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionError(self, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        low, high = self.low, self.high
        low_ok = low is None or (number > low if self.low_open else number >= low)
        high_ok = high is None or (number < high if self.high_open else number <= high)
        if not (math.isfinite(number) and low_ok and high_ok):
            shown: object = value
            if isinstance(value, int) and abs(value) >= 10**15:
                shown = f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
            raise OptionError(self, f"{shown} is out of range; it must be in {self.range_text()}")
        return value if self.kind == "int" else number

    def _check_choice(self, value: Any) -> Any:
        """One of `choices` (True is not 1: booleans only match booleans)."""
        for choice in self.choices:
            if value == choice and isinstance(value, bool) == isinstance(choice, bool):
                return choice
        raise OptionError(self, f"expected {self.range_text()}, got {value!r}")

    def wire(self) -> dict[str, Any]:
        """The option as `GET /v1/fine_tuning/options` shows it (JSON-schema-like names)."""
        return {
            "name": self.name,
            "group": self.group,
            "field": self.field,
            "param": self.api,
            "type": WIRE_TYPES[self.kind],
            "default": list(self.default) if isinstance(self.default, tuple) else self.default,
            "minimum": self.low,
            "maximum": self.high,
            "exclusive_minimum": self.low_open,
            "exclusive_maximum": self.high_open,
            "choices": list(self.choices) or None,
            "nullable": self.nullable,
            "auto": self.auto,
            "help": self.help,
        }


def show(value: Any) -> str:
    """A bound or choice as written in JSON (true/false, 1e-06)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return str(value)


def _check_modules(option: Option, value: Any) -> str | tuple[str, ...]:
    """'all-linear' or a non-empty list of module names like 'q_proj'."""
    if value == ALL_LINEAR:
        return ALL_LINEAR
    if (
        isinstance(value, list | tuple)
        and value
        and len(value) <= 64
        and all(isinstance(v, str) and len(v) <= 128 and _MODULE.match(v) for v in value)
    ):
        return tuple(value)
    raise OptionError(
        option, f"expected '{ALL_LINEAR}' or a non-empty list of module names like 'q_proj'"
    )


def _check_map_id(option: Option, value: Any) -> str:
    """An outlier map id 'om-...'."""
    if not isinstance(value, str) or not _MAP_ID.match(value):
        raise OptionError(option, f"expected an outlier map id 'om-...', got {str(value)[:40]!r}")
    return value
