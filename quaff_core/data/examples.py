"""Parsed training examples (torch-free): chat turns with tool calls, and the four file formats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["chat", "prompt_completion", "text", "preference", "reinforcement"]


@dataclass(frozen=True)
class DatasetError:
    """One problem in a training file: 1-based line, message, and a stable machine code."""

    line: int
    message: str
    code: str = "invalid_example"

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ToolCall:
    """One function call of an assistant turn; `arguments` is the JSON text of an object."""

    id: str
    name: str
    arguments: str

    def to_template(self) -> dict[str, Any]:
        """The call as chat templates expect it (arguments as a mapping)."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.loads(self.arguments)},
        }


@dataclass(frozen=True)
class Message:
    """One chat turn; `weight` 0 excludes an assistant turn from the loss."""

    role: str
    content: str
    weight: int = 1
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_template(self) -> dict[str, Any]:
        """The turn as a chat template's `messages` entry."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_template() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class Example:
    """One parsed training example; only the fields of its `format` are set.

    A `preference` example holds the conversation so far in `messages` and the two answers in
    `chosen` (OpenAI's `preferred_output`) and `rejected` (`non_preferred_output`). A
    `reinforcement` example holds the prompt in `messages` and its whole line in `item` (what
    graders read as `{{ item.* }}`).
    """

    format: Format
    line: int
    messages: tuple[Message, ...] = ()
    prompt: str = ""
    completion: str = ""
    text: str = ""
    tools: tuple[dict[str, Any], ...] = ()
    parallel_tool_calls: bool | None = None
    chosen: tuple[Message, ...] = ()
    rejected: tuple[Message, ...] = ()
    item: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def turns(self) -> tuple[Message, ...]:
        """Every chat turn of the example (the answers of a preference pair included)."""
        return self.messages + self.chosen + self.rejected

    @property
    def n_chars(self) -> int:
        """Characters of content in the example."""
        chat = sum(len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in self.turns)
        return chat + len(self.prompt) + len(self.completion) + len(self.text)

    def template_tools(self) -> list[dict[str, Any]] | None:
        """The tools for a chat template's `tools` argument (None when the example has none)."""
        return [dict(tool) for tool in self.tools] or None


def chosen_view(example: Example) -> Example:
    """A preference pair as the chat example of its preferred answer (what calibration sees and
    DPO steps are counted on); ValueError for any other format."""
    if example.format != "preference":
        raise ValueError(
            f"line {example.line}: method 'dpo' trains on preference pairs (input, "
            f"preferred_output, non_preferred_output), got a {example.format} example"
        )
    return Example(
        "chat",
        example.line,
        messages=example.messages + example.chosen,
        tools=example.tools,
        parallel_tool_calls=example.parallel_tool_calls,
    )


def prompt_view(example: Example) -> Example:
    """A reinforcement prompt as a text example (what calibration sees and steps are counted
    on); ValueError for any other format."""
    if example.format != "reinforcement":
        raise ValueError(
            f"line {example.line}: method 'reinforcement' trains on prompts (messages ending "
            f"before the answer, plus the fields graders read), got a {example.format} example"
        )
    return Example("text", example.line, text="\n".join(m.content for m in example.messages))
