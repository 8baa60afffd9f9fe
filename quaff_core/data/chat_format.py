"""OpenAI's chat training format, checked line by line (torch-free).

`messages` with roles system, user, assistant, tool (and the older function), `content` as text
or a list of text parts, assistant `tool_calls` (content may then be null) or the older
`function_call`, `tool` turns answering a call by `tool_call_id`, and the example-level `tools`
(or the older `functions`) and `parallel_tool_calls`. The older forms are turned into the newer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from quaff_core.data.examples import DatasetError, Message, ToolCall

ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool", "function")
MESSAGE_KEYS = frozenset(
    {"role", "content", "weight", "name", "tool_call_id", "tool_calls", "function_call"}
)
CHAT_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class _Errors:
    """Collects the problems of one line."""

    def __init__(self, line: int) -> None:
        self.line = line
        self.items: list[DatasetError] = []

    def add(self, message: str, code: str) -> None:
        self.items.append(DatasetError(self.line, message, code))


def _content(msg: Mapping[str, Any], where: str, errors: _Errors) -> str | None:
    """The text of `content` (parts joined); None when absent or null."""
    content = msg.get("content")
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        errors.add(f"{where}.content must be a string or a list of text parts", "wrong_type")
        return None
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str) or set(part) - {"type", "text"}:
            shown = kind if isinstance(kind, str) else type(part).__name__
            errors.add(
                f"{where}.content[{j}] must be a text part {{'type': 'text', 'text': ...}} "
                f"(got {str(shown)[:32]!r}; images and audio are not supported)",
                "content_part",
            )
            continue
        texts.append(part["text"])
    return "".join(texts)


def _arguments(value: Any, where: str, errors: _Errors) -> str | None:
    """A call's `arguments`: the JSON text of an object."""
    if not isinstance(value, str):
        errors.add(f"{where}.arguments must be a JSON string", "wrong_type")
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        errors.add(f"{where}.arguments is not valid JSON", "tool_call")
        return None
    if not isinstance(parsed, dict):
        errors.add(f"{where}.arguments must encode a JSON object", "tool_call")
        return None
    return value


def _function(call: Any, where: str, errors: _Errors) -> tuple[str, str] | None:
    """(name, arguments) of a `{"name", "arguments"}` object."""
    if not isinstance(call, dict) or set(call) - {"name", "arguments"}:
        errors.add(f"{where} must be an object with 'name' and 'arguments'", "tool_call")
        return None
    name = call.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        errors.add(f"{where}.name must be a function name (A-Z a-z 0-9 _ . -)", "tool_call")
        return None
    arguments = _arguments(call.get("arguments"), where, errors)
    return None if arguments is None else (name, arguments)


def _tool_calls(msg: Mapping[str, Any], i: int, where: str, errors: _Errors) -> list[ToolCall]:
    """`tool_calls` (or the older `function_call`) of an assistant turn."""
    if "function_call" in msg:
        found = _function(msg["function_call"], f"{where}.function_call", errors)
        return [ToolCall(f"call_{i}", *found)] if found else []
    raw = msg.get("tool_calls")
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        errors.add(f"{where}.tool_calls must be a non-empty list", "tool_call")
        return []
    calls: list[ToolCall] = []
    for j, call in enumerate(raw):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict) or set(call) - {"id", "type", "function"}:
            errors.add(f"{at} must be {{'id', 'type': 'function', 'function'}}", "tool_call")
            continue
        if not isinstance(call.get("id"), str) or not call["id"] or call.get("type") != "function":
            errors.add(f"{at} needs a string 'id' and 'type': 'function'", "tool_call")
            continue
        found = _function(call.get("function"), f"{at}.function", errors)
        if found:
            calls.append(ToolCall(call["id"], *found))
    return calls


def _check_keys(msg: Mapping[str, Any], role: Any, where: str, errors: _Errors) -> None:
    """Unknown keys, the role, and the keys only some roles may have."""
    for key in sorted(set(msg) - MESSAGE_KEYS):
        errors.add(f"{where} has unknown key {str(key)[:40]!r}", "unknown_key")
    if role not in ROLES:
        errors.add(f"{where}.role {str(role)[:40]!r} is not one of {', '.join(ROLES)}", "role")
    if role != "assistant":
        for key in ("weight", "tool_calls", "function_call"):
            if key in msg:
                errors.add(f"{where}.{key} is only allowed on assistant messages", "weight")
    if "tool_calls" in msg and "function_call" in msg:
        errors.add(f"{where} has both tool_calls and function_call", "tool_call")
    for key in ("name", "tool_call_id"):
        if key in msg and not isinstance(msg[key], str):
            errors.add(f"{where}.{key} must be a string", "wrong_type")


def parse_message(msg: Any, i: int, line: int) -> tuple[Message | None, list[DatasetError]]:
    """Check one element of `messages` (tool-call ids are matched by `parse_messages`)."""
    where = f"messages[{i}]"
    errors = _Errors(line)
    if not isinstance(msg, dict):
        errors.add(f"{where} must be an object", "wrong_type")
        return None, errors.items
    role = msg.get("role")
    _check_keys(msg, role, where, errors)
    content = _content(msg, where, errors)
    calls = _tool_calls(msg, i, where, errors) if role == "assistant" else []
    weight = msg.get("weight", 1)
    if isinstance(weight, bool) or weight not in (0, 1):
        errors.add(f"{where}.weight must be 0 or 1, got {str(weight)[:20]!r}", "weight")
    if content is None and not calls and not errors.items:
        kind = "missing" if "content" not in msg else "null"
        errors.add(f"{where}.content must be a string, got {kind}", "wrong_type")
    elif content is not None and not content.strip() and not calls and not errors.items:
        errors.add(f"{where}.content is empty", "empty_content")
    if role == "function" and not isinstance(msg.get("name"), str):
        errors.add(f"{where}: a function message needs the function's 'name'", "tool_call")
    if errors.items:
        return None, errors.items
    return (
        Message(
            role="tool" if role == "function" else str(role),
            content=content or "",
            weight=int(weight),
            tool_calls=tuple(calls),
            tool_call_id=msg.get("tool_call_id"),
            name=msg.get("name"),
        ),
        [],
    )


def _link_tool_turns(messages: list[Message], errors: _Errors) -> list[Message]:
    """Every tool turn answers an earlier call (older function turns get the call's id)."""
    open_calls: dict[str, str] = {}
    linked: list[Message] = []
    for i, message in enumerate(messages):
        for call in message.tool_calls:
            open_calls[call.id] = call.name
        if message.role != "tool":
            linked.append(message)
            continue
        call_id = message.tool_call_id
        if call_id is None and message.name is not None:
            call_id = next((k for k, v in open_calls.items() if v == message.name), None)
        if call_id is None or call_id not in open_calls:
            errors.add(
                f"messages[{i}] (tool) answers no earlier assistant tool call: give the "
                "'tool_call_id' of one",
                "tool_call",
            )
            continue
        linked.append(Message("tool", message.content, tool_call_id=call_id, name=message.name))
    return linked


def parse_messages(raw: Any, line: int) -> tuple[list[Message], list[DatasetError]]:
    """Check a `messages` list; tool turns are linked to the calls they answer."""
    if not isinstance(raw, list) or not raw:
        return [], [DatasetError(line, "messages must be a non-empty list", "wrong_type")]
    parsed: list[Message] = []
    problems: list[DatasetError] = []
    for i, msg in enumerate(raw):
        message, errs = parse_message(msg, i, line)
        problems.extend(errs)
        if message is not None:
            parsed.append(message)
    if problems:
        return [], problems
    errors = _Errors(line)
    linked = _link_tool_turns(parsed, errors)
    return linked, errors.items


def _tool(raw: Any, where: str, errors: _Errors) -> dict[str, Any] | None:
    """One tool declaration `{"type": "function", "function": {name, description?, ...}}`."""
    function = raw.get("function") if isinstance(raw, dict) else None
    if (
        not isinstance(raw, dict)
        or raw.get("type") != "function"
        or set(raw) - {"type", "function"}
    ):
        errors.add(f"{where} must be {{'type': 'function', 'function': {{...}}}}", "tools")
        return None
    return _declaration(function, f"{where}.function", errors)


def _declaration(raw: Any, where: str, errors: _Errors) -> dict[str, Any] | None:
    """A function declaration `{name, description?, parameters?, strict?}` in the tools form."""
    allowed = {"name", "description", "parameters", "strict"}
    if not isinstance(raw, dict) or set(raw) - allowed:
        errors.add(f"{where} must be an object with keys among {sorted(allowed)}", "tools")
        return None
    if not isinstance(raw.get("name"), str) or not _NAME.match(raw["name"]):
        errors.add(f"{where}.name must be a function name (A-Z a-z 0-9 _ . -)", "tools")
        return None
    if "parameters" in raw and not isinstance(raw["parameters"], dict):
        errors.add(f"{where}.parameters must be a JSON schema object", "tools")
        return None
    if "description" in raw and not isinstance(raw["description"], str):
        errors.add(f"{where}.description must be a string", "tools")
        return None
    return {"type": "function", "function": dict(raw)}


def parse_tools(
    obj: Mapping[str, Any], line: int
) -> tuple[list[dict[str, Any]], list[DatasetError]]:
    """The example's `tools` (or the older `functions`), in the tools form."""
    errors = _Errors(line)
    if "tools" in obj and "functions" in obj:
        errors.add("give either 'tools' or the older 'functions', not both", "tools")
        return [], errors.items
    key = "tools" if "tools" in obj else "functions"
    raw = obj.get(key)
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        errors.add(f"{key} must be a list", "tools")
        return [], errors.items
    check = _tool if key == "tools" else _declaration
    tools = [t for i, item in enumerate(raw) if (t := check(item, f"{key}[{i}]", errors))]
    return tools, errors.items


def check_calls(
    messages: list[Message], tools: list[dict[str, Any]], parallel: Any, line: int
) -> list[DatasetError]:
    """Calls name declared tools; `parallel_tool_calls: false` allows one call per turn."""
    errors = _Errors(line)
    if parallel is not None and not isinstance(parallel, bool):
        errors.add("parallel_tool_calls must be true or false", "wrong_type")
    declared = {t["function"]["name"] for t in tools}
    for i, message in enumerate(messages):
        for call in message.tool_calls:
            if tools and call.name not in declared:
                errors.add(
                    f"messages[{i}] calls {call.name!r}, which 'tools' does not declare", "tools"
                )
        if parallel is False and len(message.tool_calls) > 1:
            errors.add(
                f"messages[{i}] makes several calls but parallel_tool_calls is false", "tools"
            )
    return errors.items
