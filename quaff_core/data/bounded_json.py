"""JSON decoding with limits (torch-free): nesting depth, number size, and text that cannot be
stored. Used for training-file lines (`quaff_core.data.jsonl`) and API request bodies (`api.guard`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

SURROGATES = re.compile("[\ud800-\udfff]")
NUL_OR_SURROGATES = re.compile("[\x00\ud800-\udfff]")


class JsonLimitError(ValueError):
    """A JSON text past a limit; `code` says which, `path` where (dotted, '' for the root)."""

    def __init__(self, message: str, code: str, path: str = "") -> None:
        super().__init__(message)
        self.message, self.code, self.path = message, code, path


def _walk(value: Any) -> Iterator[tuple[Any, str, int]]:
    """(value, path, depth) of every value and key inside `value`, iteratively."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        yield item, path, depth
        if isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                yield key, where, depth
                stack.append((child, where, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}.{i}" if path else str(i), depth + 1)
                         for i, child in enumerate(item))  # fmt: skip


def loads_bounded(
    text: str, *, max_depth: int, max_number_chars: int, forbidden: re.Pattern[str] = SURROGATES
) -> Any:
    """`json.loads(text)` within the limits; JsonLimitError (codes `too_deep`,
    `number_too_large`, `invalid_json`, `encoding`) or json.JSONDecodeError otherwise."""

    def number(raw: str) -> str:
        if len(raw) > max_number_chars:
            raise JsonLimitError(
                f"a number has more than {max_number_chars} characters", "number_too_large"
            )
        return raw

    def parse_float(raw: str) -> float:
        value = float(number(raw))
        if not math.isfinite(value):
            raise JsonLimitError(f"the number {raw[:40]} is out of range", "number_too_large")
        return value

    def parse_constant(raw: str) -> Any:
        raise JsonLimitError(f"{raw} is not a JSON value", "invalid_json")

    try:
        value = json.loads(
            text, parse_int=lambda raw: int(number(raw)), parse_float=parse_float,
            parse_constant=parse_constant,
        )  # fmt: skip
    except RecursionError:
        raise JsonLimitError(f"nested deeper than {max_depth} levels", "too_deep") from None
    except JsonLimitError:
        raise
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # int() past Python's digit limit
        message = f"a number is too large: {str(exc)[:60]}"
        raise JsonLimitError(message, "number_too_large") from None
    for item, path, depth in _walk(value):
        if depth > max_depth:
            raise JsonLimitError(f"nested deeper than {max_depth} levels", "too_deep", path)
        if isinstance(item, str) and forbidden.search(item):
            raise JsonLimitError(
                "text holds a NUL character or an unpaired surrogate (invalid Unicode)",
                "encoding",
                path,
            )
    return value
