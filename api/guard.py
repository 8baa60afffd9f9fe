"""Guard in front of the app: load is shed, request targets and JSON bodies are bounded.

More than `max_pending_requests` requests received and not yet answered, or more than
`max_pending_per_key` of them sent with one API key: the next one is a 503 with `Retry-After`,
before it costs any work (a saturated server keeps answering the ones it admitted quickly instead
of queueing everyone for seconds, and one client cannot take every place). That 503 is held back
`shed_delay_seconds` first, which costs the server nothing (no work, no thread) but keeps a client
that retries at once from spending the server's CPU on thousands of refusals a second; at most
`max_pending_requests` refusals wait so, the others are answered at once.

Paths and query strings may not hold NUL bytes (PostgreSQL refuses them in text) and are bounded
in length; a JSON body is bounded in bytes, nesting depth and number size, and may not hold NUL
characters or lone surrogates (neither can be stored). Each refusal is a 4xx in the error
envelope, before any handler runs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from quaff_core.data import bounded_json

MAX_TARGET_BYTES = 8192
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 1000
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyError(ValueError):
    """A JSON body the guard refuses; `param` is the JSON path of the bad value, if known."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


def loads_bounded(data: bytes) -> Any:
    """Decode a JSON body within the limits; BodyError naming what is wrong otherwise."""
    try:
        return bounded_json.loads_bounded(
            data.decode("utf-8"),
            max_depth=MAX_DEPTH,
            max_number_chars=MAX_NUMBER_CHARS,
            forbidden=bounded_json.NUL_OR_SURROGATES,
        )
    except UnicodeDecodeError:
        raise BodyError("The request body is not UTF-8 text.") from None
    except bounded_json.JsonLimitError as exc:
        where = f" at '{exc.path}'" if exc.path else ""
        if exc.code == "encoding":
            message = (
                f"Invalid text{where}: NUL characters and unpaired surrogates cannot be stored."
            )
        else:
            message = f"The JSON body is refused{where}: {exc.message}."
        raise BodyError(message, exc.path or None) from None
    except json.JSONDecodeError as exc:
        raise BodyError(f"We could not parse the JSON body of your request: {exc.msg}.") from None


def _target_problem(scope: Scope) -> str | None:
    """Why the request target is refused, or None."""
    path: str = scope.get("path", "")
    query: bytes = scope.get("query_string", b"")
    if len(path) + len(query) > MAX_TARGET_BYTES:
        return f"The request URL is longer than {MAX_TARGET_BYTES} bytes."
    if "\x00" in path or b"\x00" in query or b"%00" in query.lower():
        return "The request URL contains a NUL byte."
    return None


def _is_json(scope: Scope) -> bool:
    """Whether FastAPI would read the body as JSON (a JSON content type, or none at all)."""
    headers = dict(scope.get("headers") or [])
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return (
        not content_type or content_type == b"application/json" or content_type.endswith(b"+json")
    )


def _key_of(scope: Scope) -> bytes:
    """The request's credentials as sent (the Authorization header), b"" without."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            return bytes(value)
    return b""


class RequestGuardMiddleware:
    """Pure ASGI middleware: sheds load (503), refuses bad targets (400/414) and bad JSON
    bodies (400/413)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_json_bytes: int,
        max_pending: int,
        retry_after: int,
        max_pending_per_key: int | None = None,
        shed_delay: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.app, self.max_json_bytes = app, max_json_bytes
        self.max_pending, self.retry_after = max_pending, retry_after
        self.max_per_key = max_pending_per_key or max_pending
        self.shed_delay, self.sleep = shed_delay, sleep
        self.pending, self.delayed = 0, 0
        self.per_key: dict[bytes, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = _key_of(scope)
        if self.pending >= self.max_pending or self.per_key.get(key, 0) >= self.max_per_key:
            await self._shed(scope, receive, send)
            return
        self.pending += 1
        self.per_key[key] = self.per_key.get(key, 0) + 1
        answered = False

        def done() -> None:
            self.pending -= 1
            left = self.per_key[key] - 1
            if left:
                self.per_key[key] = left
            else:
                del self.per_key[key]

        async def send_and_count(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                done()
            await send(message)

        try:
            await self._guarded(scope, receive, send_and_count)
        finally:
            if not answered:
                done()

    async def _shed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A 503 with Retry-After, held back `shed_delay` while few refusals wait."""
        if self.shed_delay > 0 and self.delayed < self.max_pending:
            self.delayed += 1
            try:
                await self.sleep(self.shed_delay)
            finally:
                self.delayed -= 1
        response = error_response(
            503,
            "The server is handling too many requests right now; please retry after a moment.",
            code="server_busy",
            headers={"Retry-After": str(self.retry_after)},
        )
        await response(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = _target_problem(scope)
        if problem is not None:
            status = 414 if problem.startswith("The request URL is longer") else 400
            await error_response(status, problem, code="invalid_url")(scope, receive, send)
            return
        if scope["method"] not in _BODY_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, more = await self._read(receive)
        if more:
            message = f"The JSON body is larger than {self.max_json_bytes} bytes."
            await error_response(413, message, code="body_too_large")(scope, receive, send)
            return
        if body.strip():
            try:
                loads_bounded(body)
            except BodyError as exc:
                response = error_response(400, exc.message, param=exc.param, code="invalid_json")
                await response(scope, receive, send)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> tuple[bytes, bool]:
        """The body (up to the limit) and whether more was sent."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_json_bytes:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that first hands the app the body already read, then the real messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
