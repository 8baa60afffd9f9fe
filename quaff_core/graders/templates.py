"""`{{ item.x }}` and `{{ sample.output_text }}` templates: the variables a grader references."""

from __future__ import annotations

import json
import re
from typing import Any

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_]\w*(?:\.\w+)*)\s*\}\}")
ROOTS = ("item", "sample")


class TemplateVariableError(KeyError):
    """A template names a variable the sample or the item does not have."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path

    def __str__(self) -> str:
        return f"the template variable '{self.path}' is not in the sample or the item"


def namespace(output_text: str, item: Any) -> dict[str, Any]:
    """What templates may reference: `item.*` and `sample.output_text` / `sample.output_json`."""
    try:
        output_json = json.loads(output_text)
    except ValueError:
        output_json = None
    return {"item": item, "sample": {"output_text": output_text, "output_json": output_json}}


def lookup(path: str, names: dict[str, Any]) -> Any:
    """The value at a dotted path (dict keys, or list indices for digits)."""
    value: Any = names
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise TemplateVariableError(path)
    return value


def as_text(value: Any) -> str:
    """A referenced value as template text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def render(template: str, names: dict[str, Any]) -> str:
    """The template with each `{{ path }}` replaced by its value."""
    return VARIABLE.sub(lambda m: as_text(lookup(m.group(1), names)), template)


def bad_roots(template: str) -> list[str]:
    """Variables of the template outside `item.` and `sample.` (a grader config error)."""
    return [
        m.group(1) for m in VARIABLE.finditer(template) if m.group(1).split(".")[0] not in ROOTS
    ]
