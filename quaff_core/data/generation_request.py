"""Parse an OpenAI chat or legacy completions request body into one `GenerationRequest`.

Torch-free: the API checks a request with it before forwarding (every bad field is a
`RequestError` naming it), and the inference process parses the same body again.
Sampling limits and defaults come from `quaff_core.options.spec.GENERATION`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from quaff_core.options.spec import GENERATION, OptionError

Kind = Literal["chat", "completion"]
CHAT_ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP = 4
MAX_PROMPTS = 16
# fields accepted only at their neutral value (a different one would be silently ignored)
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "suffix": (None, ""),
    "tool_choice": (None, "auto", "none"),
    "prediction": (None,),
    "audio": (None,),
    "modalities": (None, ["text"]),
}
IGNORED = frozenset({"user", "metadata", "store", "parallel_tool_calls", "service_tier"})
COMMON = frozenset(
    {"model", "max_tokens", "temperature", "top_p", "n", "seed", "stop", "stream"}
    | {"stream_options", *NEUTRAL, *IGNORED}
)
CHAT_FIELDS = COMMON | {
    "messages",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "tools",
    "response_format",
}
COMPLETION_FIELDS = COMMON | {"prompt", "logprobs", "echo", "best_of"}


class RequestError(ValueError):
    """A field of the request is wrong: `param` names it, the message says how."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class GenerationRequest:
    """A checked request: the prompt (chat turns or texts) and how to sample each choice."""

    kind: Kind
    model: str
    messages: tuple[dict[str, Any], ...] = ()
    tools: tuple[dict[str, Any], ...] = ()
    prompts: tuple[str, ...] = ()
    max_tokens: int = GENERATION["max_tokens"].default
    temperature: float = GENERATION["temperature"].default
    top_p: float = GENERATION["top_p"].default
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    logprobs: bool = False
    top_logprobs: int = 0
    echo: bool = False

    @property
    def greedy(self) -> bool:
        """Temperature 0: the most likely token every step."""
        return self.temperature == 0.0

    @property
    def n_prompts(self) -> int:
        """Prompts in the request (chat: one conversation)."""
        return 1 if self.kind == "chat" else len(self.prompts)


def _option(name: str, body: Mapping[str, Any], field: str | None = None) -> Any:
    """The checked value of a generation option (its default when absent or null)."""
    opt = GENERATION[name]
    raw = body.get(field or str(opt.api))
    if raw is None:
        return opt.default
    try:
        return opt.check(raw)
    except OptionError as exc:
        param = field or str(opt.api)
        raise RequestError(param, f"Invalid '{param}': {exc.reason}") from None


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """Unknown fields and non-neutral values of unsupported ones are refused."""
    for key in body:
        if key not in allowed:
            raise RequestError(str(key), f"Unrecognized request argument supplied: {key}")
    for key, neutral in NEUTRAL.items():
        if key in body and body[key] not in neutral:
            raise RequestError(key, f"'{key}' is not supported by this server; omit it")


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(key, f"'{key}' must be true or false, got {value!r}")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    """`stop`: a string or up to 4 non-empty strings."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or len(items) > MAX_STOP
        or not all(isinstance(s, str) and s for s in items)
    ):
        raise RequestError("stop", f"'stop' must be a string or a list of up to {MAX_STOP}")
    return tuple(items)


def _stream_usage(body: Mapping[str, Any], stream: bool) -> bool:
    """`stream_options.include_usage` (only with `stream: true`)."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise RequestError("stream_options", "'stream_options' is only allowed with stream=true")
    if not isinstance(options, Mapping) or set(options) - {"include_usage", "include_obfuscation"}:
        raise RequestError("stream_options", "'stream_options' takes only 'include_usage'")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise RequestError("stream_options.include_usage", "'include_usage' must be a boolean")
    return include


def _content(content: Any, param: str) -> str:
    """A message's content as text (a string, or a list of `text` parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise RequestError(f"{param}[{j}]", "only 'text' content parts are supported")
            if not isinstance(part.get("text"), str):
                raise RequestError(f"{param}[{j}].text", "a text part needs a string 'text'")
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(param, "content must be a string or a list of text parts")


def _message(raw: Any, i: int) -> dict[str, Any]:
    """One chat turn, normalised for the chat template."""
    param = f"messages[{i}]"
    if not isinstance(raw, Mapping):
        raise RequestError(param, f"'{param}' must be an object with 'role' and 'content'")
    role = raw.get("role")
    if role not in CHAT_ROLES:
        raise RequestError(f"{param}.role", f"role must be one of {', '.join(CHAT_ROLES)}")
    message: dict[str, Any] = {
        "role": "system" if role == "developer" else role,
        "content": _content(raw.get("content"), f"{param}.content"),
    }
    for key in ("name", "tool_call_id", "tool_calls"):
        if raw.get(key) is not None:
            message[key] = raw[key]
    return message


def _messages(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not value:
        raise RequestError("messages", "'messages' must be a non-empty list of chat turns")
    return tuple(_message(m, i) for i, m in enumerate(value))


def _tools(value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(t, Mapping) and t.get("type") == "function" and "function" in t for t in value
    ):
        raise RequestError("tools", "'tools' must be a list of {type: function, function: ...}")
    return tuple(dict(t) for t in value)


def _prompts(value: Any) -> tuple[str, ...]:
    """`prompt`: a string or a list of up to 16 strings (token-id prompts are not supported)."""
    prompts = [value] if isinstance(value, str) else value
    if (
        not isinstance(prompts, list)
        or not prompts
        or len(prompts) > MAX_PROMPTS
        or not all(isinstance(p, str) for p in prompts)
    ):
        raise RequestError("prompt", f"'prompt' must be a string or a list of up to {MAX_PROMPTS}")
    return tuple(prompts)


def _sampling(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields both request kinds share."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model", "'model' must be a model id")
    stream = _bool(body, "stream")
    return {
        "model": model,
        "temperature": float(_option("temperature", body)),
        "top_p": float(_option("top_p", body)),
        "n": int(_option("n", body)),
        "seed": _option("seed", body),
        "stop": _stop(body.get("stop")),
        "stream": stream,
        "include_usage": _stream_usage(body, stream),
    }


def parse_chat(body: Any) -> GenerationRequest:
    """Check a `POST /v1/chat/completions` body."""
    if not isinstance(body, Mapping):
        raise RequestError("body", "the request body must be a JSON object")
    _check_fields(body, CHAT_FIELDS)
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise RequestError("response_format", "only response_format {type: text} is supported")
    field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else None
    logprobs = _bool(body, "logprobs")
    top = int(_option("top_logprobs", body))
    if top and not logprobs:
        raise RequestError("top_logprobs", "'top_logprobs' needs 'logprobs': true")
    return GenerationRequest(
        kind="chat",
        messages=_messages(body.get("messages")),
        tools=_tools(body.get("tools")),
        max_tokens=int(_option("max_tokens", body, field)),
        logprobs=logprobs,
        top_logprobs=top,
        **_sampling(body),
    )


def parse_completion(body: Any) -> GenerationRequest:
    """Check a `POST /v1/completions` body."""
    if not isinstance(body, Mapping):
        raise RequestError("body", "the request body must be a JSON object")
    _check_fields(body, COMPLETION_FIELDS)
    sampling = _sampling(body)
    best_of = body.get("best_of")
    if best_of is not None and best_of != sampling["n"]:
        raise RequestError("best_of", "'best_of' other than n is not supported")
    top = body.get("logprobs")
    return GenerationRequest(
        kind="completion",
        prompts=_prompts(body.get("prompt")),
        max_tokens=int(_option("max_tokens", body)),
        logprobs=top is not None,
        top_logprobs=int(_option("completion_logprobs", body)),
        echo=_bool(body, "echo"),
        **sampling,
    )


def parse_request(kind: Kind, body: Any) -> GenerationRequest:
    """Parse either kind of body."""
    return parse_chat(body) if kind == "chat" else parse_completion(body)
