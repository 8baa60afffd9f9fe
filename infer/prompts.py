"""Turn a request into prompt token ids: the model's chat template (with tools), or raw text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2.exceptions import TemplateError
from transformers import PreTrainedTokenizerBase

from quaff_core.data.generation_request import GenerationRequest, RequestError


@dataclass(frozen=True)
class Prompt:
    """One prompt as text and token ids."""

    text: str
    ids: list[int]


def supports_tools(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the chat template renders a `tools` list."""
    template = tokenizer.chat_template
    return isinstance(template, str) and "tools" in template


def _chat_text(request: GenerationRequest, tokenizer: PreTrainedTokenizerBase) -> str:
    if request.tools and not supports_tools(tokenizer):
        raise RequestError(
            "tools", f"the chat template of {request.model} does not render tools; omit 'tools'"
        )
    try:
        text = tokenizer.apply_chat_template(
            list(request.messages),
            tools=list(request.tools) or None,
            add_generation_prompt=True,
            tokenize=False,
        )
    except TemplateError as exc:
        raise RequestError("messages", f"the chat template refused the messages: {exc}") from exc
    if not isinstance(text, str):
        raise RequestError("messages", "the chat template did not render text")
    return text


def _context_limit(model: Any) -> int | None:
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) else None


def encode_prompts(
    request: GenerationRequest, tokenizer: PreTrainedTokenizerBase, model: Any
) -> list[Prompt]:
    """The request's prompts; RequestError when one does not fit the model's context."""
    if request.kind == "chat":
        text = _chat_text(request, tokenizer)
        prompts = [Prompt(text, list(tokenizer(text, add_special_tokens=False)["input_ids"]))]
        param = "messages"
    else:
        prompts = [
            Prompt(t, list(tokenizer(t, add_special_tokens=True)["input_ids"]))
            for t in request.prompts
        ]
        param = "prompt"
    if any(not p.ids for p in prompts):
        raise RequestError(param, "the prompt is empty")
    limit = _context_limit(model)
    longest = max(len(p.ids) for p in prompts)
    if limit is not None and longest + request.max_tokens > limit:
        raise RequestError(
            param if longest >= limit else "max_tokens",
            f"This model's maximum context length is {limit} tokens; the prompt has {longest} "
            f"and max_tokens asks for {request.max_tokens} more.",
        )
    return prompts
