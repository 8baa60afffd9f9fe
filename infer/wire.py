"""OpenAI response shapes: `chat.completion`, `chat.completion.chunk`, `text_completion`, SSE."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import PreTrainedTokenizerBase

from infer.generate import TokenEvent
from quaff_core.data.generation_request import GenerationRequest

FINGERPRINT = "fp_quaff"


def sse(payload: dict[str, Any]) -> bytes:
    """One Server-Sent Event carrying a JSON object."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


DONE = b"data: [DONE]\n\n"


@dataclass
class Choice:
    """What one choice produced so far."""

    index: int
    text: str = ""
    tokens: list[TokenEvent] = field(default_factory=list)
    finish_reason: str | None = None


class Shaper:
    """Builds the wire objects of one request (ids, timestamps, the model name as asked)."""

    def __init__(
        self, request: GenerationRequest, tokenizer: PreTrainedTokenizerBase, prompt_tokens: int
    ) -> None:
        self.request = request
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        prefix = "chatcmpl" if request.kind == "chat" else "cmpl"
        self.id = f"{prefix}-{secrets.token_hex(12)}"
        self.created = int(time.time())

    def _token(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id]))

    def _entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        text = self._token(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    def chat_logprobs(self, events: Sequence[TokenEvent]) -> dict[str, Any] | None:
        """`choices[].logprobs` of a chat choice (None unless asked)."""
        if not self.request.logprobs:
            return None
        content = [
            {
                **self._entry(e.token_id, e.logprob),
                "top_logprobs": [self._entry(t, lp) for t, lp in e.top],
            }
            for e in events
            if e.token_id is not None and e.logprob is not None
        ]
        return {"content": content, "refusal": None}

    def completion_logprobs(self, events: Sequence[TokenEvent]) -> dict[str, Any] | None:
        """`choices[].logprobs` of a completions choice (legacy shape)."""
        if not self.request.logprobs:
            return None
        kept = [e for e in events if e.token_id is not None and e.logprob is not None]
        return {
            "tokens": [self._token(e.token_id) for e in kept if e.token_id is not None],
            "token_logprobs": [e.logprob for e in kept],
            "top_logprobs": [{self._token(t): lp for t, lp in e.top} for e in kept],
            "text_offset": [],
        }

    def usage(self, choices: Sequence[Choice]) -> dict[str, int]:
        """Token counts: every prompt once, every generated token of every choice."""
        completion = sum(sum(1 for e in c.tokens if e.token_id is not None) for c in choices)
        prompt = self.prompt_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _base(self, obj: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.request.model,
            "system_fingerprint": FINGERPRINT,
        }

    def final(self, choices: Sequence[Choice], prompts: Sequence[str] = ()) -> dict[str, Any]:
        """The whole response of a non-streamed request."""
        if self.request.kind == "chat":
            body = [
                {
                    "index": c.index,
                    "finish_reason": c.finish_reason,
                    "message": {"role": "assistant", "content": c.text, "refusal": None},
                    "logprobs": self.chat_logprobs(c.tokens),
                }
                for c in choices
            ]
            return {**self._base("chat.completion"), "choices": body, "usage": self.usage(choices)}
        body = [
            {
                "index": c.index,
                "finish_reason": c.finish_reason,
                "text": self._echo(c, prompts) + c.text,
                "logprobs": self.completion_logprobs(c.tokens),
            }
            for c in choices
        ]
        return {**self._base("text_completion"), "choices": body, "usage": self.usage(choices)}

    def _echo(self, choice: Choice, prompts: Sequence[str]) -> str:
        if not self.request.echo:
            return ""
        return prompts[choice.index // self.request.n]

    def chunk(
        self, index: int, event: TokenEvent | None, *, first: bool = False, prompt: str = ""
    ) -> dict[str, Any]:
        """One streamed chunk for choice `index` (`first`: the role-only chunk of a chat choice)."""
        finish = event.finish_reason if event is not None else None
        if self.request.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if event is not None and event.text:
                delta["content"] = event.text
            events = [event] if event is not None else []
            choice = {
                "index": index,
                "delta": delta,
                "finish_reason": finish,
                "logprobs": self.chat_logprobs(events) if events else None,
            }
            return {**self._base("chat.completion.chunk"), "choices": [choice], "usage": None}
        text = prompt + (event.text if event is not None else "")
        events = [event] if event is not None else []
        choice = {
            "index": index,
            "text": text,
            "finish_reason": finish,
            "logprobs": self.completion_logprobs(events) if events else None,
        }
        return {**self._base("text_completion"), "choices": [choice], "usage": None}

    def usage_chunk(self, choices: Sequence[Choice]) -> dict[str, Any]:
        """The last chunk with `stream_options.include_usage`: no choices, the usage."""
        obj = "chat.completion.chunk" if self.request.kind == "chat" else "text_completion"
        return {**self._base(obj), "choices": [], "usage": self.usage(choices)}
