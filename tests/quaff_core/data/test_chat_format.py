"""OpenAI's full chat format and its preference format: accepted as documented, refused clearly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from quaff_core.data.formats import parse_example
from quaff_core.data.jsonl import validate_jsonl

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and country"},
                "format": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "format"],
        },
    },
}
ARGS = json.dumps({"location": "San Francisco, USA", "format": "celsius"})
# OpenAI's fine-tuning guide, tool calling (the call, then its result and the answer)
OPENAI_TOOLS: dict[str, Any] = {
    "messages": [
        {"role": "user", "content": "What is the weather in San Francisco?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_id",
                    "type": "function",
                    "function": {"name": "get_current_weather", "arguments": ARGS},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_id", "content": "21.0"},
        {"role": "assistant", "content": "It is 21 degrees celsius in San Francisco, CA"},
    ],
    "tools": [WEATHER_TOOL],
    "parallel_tool_calls": False,
}
# the older function-calling form
OPENAI_FUNCTIONS = {
    "messages": [
        {"role": "user", "content": "What is the weather in San Francisco?"},
        {"role": "assistant", "function_call": {"name": "get_current_weather", "arguments": ARGS}},
        {"role": "function", "name": "get_current_weather", "content": "21.0"},
        {"role": "assistant", "content": "It is 21 degrees celsius."},
    ],
    "functions": [WEATHER_TOOL["function"]],
}
# OpenAI's preference (DPO) format
OPENAI_DPO = {
    "input": {
        "messages": [
            {"role": "user", "content": "Hello, can you tell me how cold San Francisco is today?"}
        ],
        "tools": [],
        "parallel_tool_calls": True,
    },
    "preferred_output": [
        {
            "role": "assistant",
            "content": "Today in San Francisco, it is not quite cold as expected. Morning "
            "clouds will give away to sunshine, with a high near 68°F (20°C) and a low around "
            "57°F (14°C).",
        }
    ],
    "non_preferred_output": [
        {"role": "assistant", "content": "It is not particularly cold in San Francisco today."}
    ],
}
PARTS = {
    "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
        {"role": "assistant", "content": "Hello!"},
    ]
}


def jsonl(*rows: Any) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@pytest.mark.parametrize(
    ("row", "fmt"),
    [
        (OPENAI_TOOLS, "chat"),
        (OPENAI_FUNCTIONS, "chat"),
        (OPENAI_DPO, "preference"),
        (PARTS, "chat"),
    ],
)
def test_openai_examples_are_processed(row: dict[str, Any], fmt: str) -> None:
    report = validate_jsonl(jsonl(row, row))
    assert report.ok, report.summary()
    assert (report.format, report.n_examples) == (fmt, 2)


def test_tool_calls_are_parsed_and_older_forms_converted() -> None:
    new, _ = parse_example(OPENAI_TOOLS, 1)
    old, _ = parse_example(OPENAI_FUNCTIONS, 1)
    assert new is not None
    assert old is not None
    call = new.messages[1].tool_calls[0]
    assert (call.id, call.name, json.loads(call.arguments)["format"]) == (
        "call_id",
        "get_current_weather",
        "celsius",
    )
    assert new.messages[2].tool_call_id == "call_id"
    assert old.tools == new.tools
    converted = old.messages[2]
    assert (converted.role, converted.tool_call_id) == ("tool", old.messages[1].tool_calls[0].id)
    parts, _ = parse_example(PARTS, 1)
    assert parts is not None
    assert parts.messages[1].content == "Hi there"
    pair, _ = parse_example(OPENAI_DPO, 1)
    assert pair is not None
    assert [m.role for m in pair.messages] == ["user"]
    assert pair.chosen[0].content.startswith("Today in San Francisco")
    assert pair.rejected[0].content.startswith("It is not particularly")


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    row = json.loads(json.dumps(base))
    for path, value in changes.items():
        target = row
        *parents, last = path.split("__")
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value
    return row


@pytest.mark.parametrize(
    ("row", "code", "text"),
    [
        (_with(OPENAI_TOOLS, messages__1__tool_calls__0__function__arguments="{nope"), "tool_call",
         "arguments is not valid JSON"),
        (_with(OPENAI_TOOLS, messages__1__tool_calls__0__function__name="unknown_fn"), "tools",
         "calls 'unknown_fn', which 'tools' does not declare"),
        (_with(OPENAI_TOOLS, messages__2__tool_call_id="other"), "tool_call",
         "answers no earlier assistant tool call"),
        (_with(OPENAI_TOOLS, messages__0__tool_calls=[]), "weight",
         "tool_calls is only allowed on assistant messages"),
        (_with(PARTS, messages__1__content=[{"type": "image_url", "image_url": {"url": "x"}}]),
         "content_part", "images and audio are not supported"),
        (_with(OPENAI_TOOLS, tools=[{"type": "function"}]), "tools", "tools[0].function must be"),
        (_with(OPENAI_TOOLS, parallel_tool_calls="yes"), "wrong_type",
         "parallel_tool_calls must be true or false"),
        (_with(OPENAI_DPO, preferred_output=[]), "wrong_type",
         "preferred_output: messages must be a non-empty list"),
        (_with(OPENAI_DPO, non_preferred_output=[{"role": "user", "content": "x"}]), "preference",
         "non_preferred_output must be a list holding exactly one assistant message"),
        (_with(OPENAI_DPO, input={"messages": [{"role": "assistant", "content": "x"}]}),
         "preference", "input.messages must end before the answer"),
        (_with(OPENAI_TOOLS, messages__3__content=None), "wrong_type",
         "messages[3].content must be a string, got null"),
    ],
)  # fmt: skip
def test_bad_lines_name_the_problem(row: dict[str, Any], code: str, text: str) -> None:
    report = validate_jsonl(jsonl(row))
    assert not report.ok
    assert (report.errors[0].line, report.errors[0].code) == (1, code)
    assert text in report.errors[0].message


def test_two_parallel_calls_need_parallel_tool_calls() -> None:
    second = dict(OPENAI_TOOLS["messages"][1]["tool_calls"][0], id="call_2")
    row = _with(OPENAI_TOOLS)
    row["messages"][1]["tool_calls"].append(second)
    assert "parallel_tool_calls is false" in validate_jsonl(jsonl(row)).summary()
    row["parallel_tool_calls"] = True
    assert validate_jsonl(jsonl(row)).ok


def test_statistics_count_tool_calls() -> None:
    stats = validate_jsonl(jsonl(OPENAI_TOOLS, PARTS)).stats
    assert (stats["tool_calls"], stats["examples_with_tools"]) == (1, 1)
    assert stats["role_counts"]["tool"] == 1
