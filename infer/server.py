"""The internal HTTP API of an inference node (only the Quaff API calls it, with the node token).

`POST /internal/v1/generate` {kind, body, model}: the OpenAI response (JSON or SSE) for an
already-authorised request; errors come in the OpenAI envelope, which the API passes on.
`POST /internal/v1/tasks` {type: evaluation | export, id}: run a stored task on the device.
`GET /internal/v1/stats`: what is loaded and how busy the node is.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from infer.scheduler import GenerationWork, QueueFull, Scheduler, TaskWork
from infer.wire import DONE, Choice, Shaper, sse
from quaff_core.data.generation_request import RequestError, parse_request
from store.model_refs import ModelRef

logger = logging.getLogger(__name__)

TaskFactory = Callable[[str, str], TaskWork]


def error_body(
    message: str, *, status: int, param: str | None = None, code: str | None = None
) -> dict:
    """The OpenAI error envelope, all four keys present (the API forwards it unchanged)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(message, status=status, param=param, code=code)
    return JSONResponse(body, status_code=status, headers=headers)


async def _collect(
    queue: asyncio.Queue[tuple[str, Any]], shaper: Shaper, choices: list[Choice], prompts: list[str]
) -> Response:
    while True:
        kind, payload = await queue.get()
        if kind == "error":
            return _error(*payload)
        if kind == "end":
            return JSONResponse(shaper.final(choices, prompts))
        index, event = payload
        choice = choices[index]
        choice.text += event.text
        choice.tokens.append(event)
        choice.finish_reason = event.finish_reason or choice.finish_reason


async def _stream(
    queue: asyncio.Queue[tuple[str, Any]],
    work: GenerationWork,
    shaper: Shaper,
    choices: list[Choice],
    prompts: list[str],
) -> AsyncIterator[bytes]:
    request = work.request
    started: set[int] = set()
    try:
        if request.kind == "chat":
            for choice in choices:
                started.add(choice.index)
                yield sse(shaper.chunk(choice.index, None, first=True))
        while True:
            kind, payload = await queue.get()
            if kind == "error":
                yield sse(
                    error_body(payload[1], status=payload[0], param=payload[2], code=payload[3])
                )
                return
            if kind == "end":
                break
            index, event = payload
            choices[index].tokens.append(event)
            echo = ""
            if request.kind == "completion" and index not in started:
                started.add(index)
                echo = prompts[index // request.n] if request.echo else ""
            if event.text or event.finish_reason or request.logprobs or echo:
                yield sse(shaper.chunk(index, event, prompt=echo))
        if request.include_usage:
            yield sse(shaper.usage_chunk(choices))
        yield DONE
    finally:
        work.cancelled.set()  # the client went away (or we are done): stop its rows


def _queue_full(message: str, retry_after: int, code: str | None = None) -> JSONResponse:
    """429 with Retry-After: the node's queue is full."""
    return _error(429, message, None, code, {"Retry-After": str(retry_after)})


def _stats(scheduler: Scheduler) -> dict[str, Any]:
    """What is loaded, how deep the queue is, how many batches ran."""
    return {
        **scheduler.cache.stats(),
        "queue_depth": scheduler.depth(),
        "batches_run": scheduler.batches_run,
    }


def _submit_task(scheduler: Scheduler, tasks: TaskFactory, body: Any, retry_after: int) -> Response:
    """Queue a stored task (202), or say why not."""
    try:
        scheduler.submit(tasks(str(body.get("type")), str(body.get("id"))))
    except QueueFull:
        return _queue_full("The inference queue is full; retry later.", retry_after)
    except ValueError as exc:
        return _error(400, str(exc), "type")
    return JSONResponse({"accepted": True}, status_code=202)


def _submit_generation(
    scheduler: Scheduler, payload: Any, queue: asyncio.Queue[tuple[str, Any]], retry_after: int
) -> GenerationWork | Response:
    """Parse the forwarded request and queue it; its events go to `queue` (or an error)."""
    try:
        generation = parse_request(payload.get("kind"), payload.get("body"))
        ref = ModelRef.from_wire(payload.get("model"))
    except RequestError as exc:
        return _error(400, exc.message, exc.param)
    except (ValueError, TypeError) as exc:
        return _error(400, f"malformed internal request: {exc}")
    loop = asyncio.get_running_loop()

    def emit(kind: str, data: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (kind, data))

    work = GenerationWork(generation, ref, emit)
    try:
        scheduler.submit(work)
    except QueueFull:
        return _queue_full(
            "The inference queue is full; retry after a moment.", retry_after, "queue_full"
        )
    return work


async def _generate(scheduler: Scheduler, payload: Any, retry_after: int) -> Response:
    """The OpenAI response for a forwarded request: JSON once done, or an SSE stream."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    work = _submit_generation(scheduler, payload, queue, retry_after)
    if isinstance(work, Response):
        return work
    kind, data = await queue.get()
    if kind == "error":
        return _error(*data)
    tokenizer, prompt_tokens, prompts = data
    generation = work.request
    shaper = Shaper(generation, tokenizer, prompt_tokens)
    choices = [Choice(i) for i in range(generation.n_prompts * generation.n)]
    if not generation.stream:
        try:
            return await _collect(queue, shaper, choices, prompts)
        finally:
            work.cancelled.set()
    return StreamingResponse(
        _stream(queue, work, shaper, choices, prompts), media_type="text/event-stream"
    )


def create_infer_app(
    scheduler: Scheduler, token: str, tasks: TaskFactory, retry_after: int = 1
) -> FastAPI:
    """The node's app; every route but /healthz needs `Authorization: Bearer <token>`."""
    app = FastAPI(title="Quaff inference node", docs_url=None, redoc_url=None, openapi_url=None)

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given.encode(), token.encode())

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/internal/v1/stats", response_model=None)
    def stats(request: Request) -> Any:
        return _stats(scheduler) if authorised(request) else _error(401, "bad node token")

    @app.post("/internal/v1/tasks", response_model=None)
    async def task(request: Request) -> Any:
        if not authorised(request):
            return _error(401, "bad node token")
        return _submit_task(scheduler, tasks, await request.json(), retry_after)

    @app.post("/internal/v1/generate", response_model=None)
    async def generate(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "bad node token")
        return await _generate(scheduler, await request.json(), retry_after)

    return app
