"""A job's metadata: at most 16 string pairs, with keys the list filter can match."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from store.errors import InvalidRequestError

MAX_PAIRS = 16
_BAD_KEY = re.compile(r"[\"\\\x00-\x1f\x7f]")


def check_metadata_key(key: str, param: str) -> None:
    """A metadata key: 1 to 64 characters, none of them quotes, backslashes or control
    characters (keys are matched inside JSON paths by the list filter)."""
    if not key or len(key) > 64 or _BAD_KEY.search(key):
        raise InvalidRequestError(
            f"Invalid metadata key {key[:64]!r}: 1 to 64 characters, without quotes, backslashes "
            "or control characters.",
            param=param,
        )


def checked_metadata(metadata: Any) -> dict[str, str] | None:
    """The request's metadata as a dict (None when absent or empty); a bad pair names itself."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping) or len(metadata) > MAX_PAIRS:
        raise InvalidRequestError(
            f"'metadata' must be an object of at most {MAX_PAIRS} pairs", param="metadata"
        )
    for key, value in metadata.items():
        check_metadata_key(str(key), f"metadata.{str(key)[:64]}")
        if not isinstance(value, str) or len(value) > 512:
            raise InvalidRequestError(
                f"metadata[{key!r}]: keys are at most 64 characters, values strings of at most 512",
                param=f"metadata.{key}",
            )
    return dict(metadata) or None
