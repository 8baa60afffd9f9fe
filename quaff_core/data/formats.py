"""One decoded JSONL line -> an `Example` of one of the five formats, or its problems (no torch).

chat `{"messages": [...], "tools"?, "parallel_tool_calls"?}` (OpenAI's full chat format, see
`chat_format`), `{"prompt", "completion"}`, `{"text"}`, and OpenAI's preference format
`{"input": {"messages", "tools"?, ...}, "preferred_output": [...], "non_preferred_output": [...]}`,
and OpenAI's reinforcement format: `{"messages": [...]}` ending before the answer (no assistant
message last), plus any other fields, which graders read as `{{ item.<field> }}`.
"""

from __future__ import annotations

from typing import Any

from quaff_core.data.chat_format import CHAT_KEYS, check_calls, parse_messages, parse_tools
from quaff_core.data.examples import DatasetError, Example, Format, Message

FORMAT_KEYS: dict[Format, frozenset[str]] = {
    "chat": frozenset({"messages"}),
    "prompt_completion": frozenset({"prompt", "completion"}),
    "text": frozenset({"text"}),
    "preference": frozenset({"input", "preferred_output", "non_preferred_output"}),
}
ALLOWED_KEYS: dict[Format, frozenset[str]] = {
    **FORMAT_KEYS,
    "chat": CHAT_KEYS,
}
Parsed = tuple[Example | None, list[DatasetError]]


def _parse_chat(obj: dict[str, Any], line: int) -> Parsed:
    """A chat example: at least one assistant turn with weight 1."""
    messages, errors = parse_messages(obj["messages"], line)
    tools, tool_errors = parse_tools(obj, line)
    errors += tool_errors
    if errors:
        return None, errors
    errors = check_calls(messages, tools, obj.get("parallel_tool_calls"), line)
    if errors:
        return None, errors
    assistants = [m for m in messages if m.role == "assistant"]
    if not assistants:
        return None, [DatasetError(line, "no assistant message to train on", "no_assistant")]
    if all(m.weight == 0 for m in assistants):
        msg = "every assistant message has weight 0: nothing to train on"
        return None, [DatasetError(line, msg, "no_assistant")]
    example = Example(
        "chat",
        line,
        messages=tuple(messages),
        tools=tuple(tools),
        parallel_tool_calls=obj.get("parallel_tool_calls"),
    )
    return example, []


def _answer(raw: Any, key: str, line: int) -> tuple[tuple[Message, ...], list[DatasetError]]:
    """`preferred_output` / `non_preferred_output`: one assistant turn (a list, as OpenAI's)."""
    messages, errors = parse_messages(raw, line)
    if errors:
        return (), [DatasetError(e.line, f"{key}: {e.message}", e.code) for e in errors]
    if len(messages) != 1 or messages[0].role != "assistant":
        msg = f"{key} must be a list holding exactly one assistant message"
        return (), [DatasetError(line, msg, "preference")]
    return tuple(messages), []


def _parse_preference(obj: dict[str, Any], line: int) -> Parsed:
    """A preference pair: the conversation in `input`, then the preferred and the other answer."""
    given = obj.get("input")
    if not isinstance(given, dict) or "messages" not in given or set(given) - CHAT_KEYS:
        msg = f"input must be an object with 'messages' (and optionally {sorted(CHAT_KEYS)})"
        return None, [DatasetError(line, msg, "preference")]
    messages, errors = parse_messages(given["messages"], line)
    tools, tool_errors = parse_tools(given, line)
    chosen, chosen_errors = _answer(obj.get("preferred_output"), "preferred_output", line)
    rejected, rejected_errors = _answer(
        obj.get("non_preferred_output"), "non_preferred_output", line
    )
    errors += tool_errors + chosen_errors + rejected_errors
    if not errors:
        parallel = given.get("parallel_tool_calls")
        errors = check_calls([*messages, *chosen, *rejected], tools, parallel, line)
    if not errors and messages[-1].role == "assistant":
        msg = "input.messages must end before the answer (not with an assistant message)"
        errors = [DatasetError(line, msg, "preference")]
    if errors:
        return None, errors
    example = Example(
        "preference",
        line,
        messages=tuple(messages),
        tools=tuple(tools),
        parallel_tool_calls=given.get("parallel_tool_calls"),
        chosen=chosen,
        rejected=rejected,
    )
    return example, []


def _parse_strings(obj: dict[str, Any], fmt: Format, line: int) -> Parsed:
    """A prompt/completion or text example."""
    errors: list[DatasetError] = []
    for key in sorted(FORMAT_KEYS[fmt]):
        value = obj.get(key)
        if key not in obj:
            errors.append(DatasetError(line, f"missing key {key!r}", "missing_key"))
        elif not isinstance(value, str):
            kind = type(value).__name__
            errors.append(DatasetError(line, f"{key} must be a string, got {kind}", "wrong_type"))
        elif not value.strip():
            errors.append(DatasetError(line, f"{key} is empty", "empty_content"))
    if errors:
        return None, errors
    if fmt == "text":
        return Example(format="text", line=line, text=obj["text"]), []
    return Example(fmt, line, prompt=obj["prompt"], completion=obj["completion"]), []


def _is_prompt(obj: dict[str, Any]) -> bool:
    """A chat-shaped line whose messages end before the answer: a reinforcement prompt."""
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return False
    return messages[-1].get("role") not in ("assistant", None)


def _parse_prompt(obj: dict[str, Any], line: int) -> Parsed:
    """A reinforcement prompt: valid chat messages (tools allowed), the line kept as its item."""
    messages, errors = parse_messages(obj["messages"], line)
    tools, tool_errors = parse_tools(obj, line)
    errors += tool_errors
    if errors:
        return None, errors
    example = Example(
        "reinforcement", line, messages=tuple(messages), tools=tuple(tools), item=dict(obj)
    )
    return example, []


def parse_example(obj: Any, line: int) -> Parsed:
    """Validate one decoded JSON value; returns the example or the errors found."""
    if not isinstance(obj, dict):
        kind = type(obj).__name__
        return None, [DatasetError(line, f"expected a JSON object, got {kind}", "wrong_type")]
    matches = [fmt for fmt, keys in FORMAT_KEYS.items() if keys & obj.keys()]
    if not matches:
        keys = ", ".join(sorted(str(k)[:40] for k in obj)[:10]) or "none"
        msg = (
            "no known format: expected 'messages', 'prompt'/'completion', 'text' or "
            f"'input'/'preferred_output'/'non_preferred_output' (keys: {keys})"
        )
        return None, [DatasetError(line, msg, "unknown_format")]
    if len(matches) > 1:
        return None, [DatasetError(line, f"mixes formats {', '.join(matches)}", "mixed_formats")]
    fmt = matches[0]
    if fmt == "chat" and _is_prompt(obj):
        return _parse_prompt(obj, line)
    unknown = sorted(set(obj) - ALLOWED_KEYS[fmt])
    if unknown:
        msg = "unknown key {!r} in a {} example"
        return None, [DatasetError(line, msg.format(k[:40], fmt), "unknown_key") for k in unknown]
    if fmt == "chat":
        return _parse_chat(obj, line)
    if fmt == "preference":
        return _parse_preference(obj, line)
    return _parse_strings(obj, fmt, line)
