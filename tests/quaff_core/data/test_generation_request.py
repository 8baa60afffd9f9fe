"""Parsing chat and completions bodies: defaults, limits, and every bad field named."""

from __future__ import annotations

from typing import Any

import pytest

from quaff_core.data.generation_request import RequestError, parse_chat, parse_completion

CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_defaults_come_from_the_option_spec() -> None:
    parsed = parse_chat(CHAT)
    assert (parsed.max_tokens, parsed.temperature, parsed.top_p, parsed.n) == (256, 1.0, 1.0, 1)
    assert parsed.messages == ({"role": "user", "content": "hi"},)
    assert not parsed.stream
    assert not parsed.logprobs


def test_chat_reads_every_supported_field() -> None:
    parsed = parse_chat({
        **CHAT, "max_completion_tokens": 9, "temperature": 0, "top_p": 0.5, "n": 2, "seed": 4,
        "stop": "x", "stream": True, "stream_options": {"include_usage": True},
        "logprobs": True, "top_logprobs": 3, "user": "u",
        "messages": [{"role": "developer", "content": [{"type": "text", "text": "a"}]},
                     {"role": "user", "content": "b"}],
    })  # fmt: skip
    assert (parsed.max_tokens, parsed.greedy, parsed.top_p, parsed.n, parsed.seed) == (
        9, True, 0.5, 2, 4)  # fmt: skip
    assert parsed.stop == ("x",)
    assert parsed.include_usage
    assert parsed.top_logprobs == 3
    assert parsed.messages[0] == {"role": "system", "content": "a"}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 5}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"bogus": 1}, "bogus"),
        ({"model": ""}, "model"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_bad_chat_fields_are_named(change: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_chat({**CHAT, **change})
    assert caught.value.param == param


def test_completion_prompts_logprobs_and_echo() -> None:
    parsed = parse_completion({"model": "m", "prompt": ["a", "b"], "logprobs": 2, "echo": True})
    assert parsed.prompts == ("a", "b")
    assert parsed.n_prompts == 2
    assert parsed.logprobs
    assert parsed.top_logprobs == 2
    assert parsed.echo


@pytest.mark.parametrize(
    ("change", "param"),
    [({"prompt": [1, 2]}, "prompt"), ({"logprobs": 9}, "logprobs"), ({"best_of": 3}, "best_of"),
     ({"suffix": "s"}, "suffix")],
)  # fmt: skip
def test_bad_completion_fields_are_named(change: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_completion({"model": "m", "prompt": "x", **change})
    assert caught.value.param == param
