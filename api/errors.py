"""The one place that renders `{"error": {message, type, param, code}}`, for every error."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.gate import ServiceBusyError
from store.errors import StoreError

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_TYPES = {401: "authentication_error", 404: "not_found_error"}


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error in the OpenAI envelope, all four keys present."""
    kind = (
        type or _TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    )
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _store_error(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StoreError):
        raise exc
    return error_response(
        exc.status_code, exc.message, type=exc.error_type, param=exc.param, code=exc.code
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
        code: str | None = "unknown_url"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
        code = "method_not_allowed"
    else:
        message, code = str(exc.detail), getattr(exc, "code", None)
    return error_response(exc.status_code, message, code=code, headers=exc.headers)


def _param(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc[1:] if isinstance(p, str | int)] if loc else []
    return ".".join(parts)[:256] or None


def _first_required(request: Request) -> str | None:
    """The first required field of the route's JSON body model (what an absent body lacks)."""
    field = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(field, "field_info", None), "annotation", None)
    for name, info in getattr(model, "model_fields", {}).items():
        if info.is_required():
            return str(info.alias or name)
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Every validation failure is OpenAI's 400 `invalid_request_error` naming the field."""
    if not isinstance(exc, RequestValidationError):
        raise exc
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return error_response(
            400, "We could not parse the JSON body of your request.", code="invalid_json"
        )
    param = _param(tuple(first.get("loc", ())))
    if kind == "missing" and param is None:  # no body at all: as `{}`, name what it lacks
        param = _first_required(request)
    reason = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return error_response(
            400, f"Unrecognized request argument supplied: {param}", param=param, code=None
        )
    if kind == "missing" and param is None:
        return error_response(400, "The request needs a JSON body.", code="invalid_json")
    if kind == "missing":
        return error_response(400, f"Missing required parameter: '{param}'.", param=param)
    message = f"Invalid value for '{param}': {reason}" if param else reason
    return error_response(400, message[:1000], param=param)


def _retry_after(request: Request) -> dict[str, str]:
    settings = getattr(request.app.state, "settings", None)
    return {"Retry-After": str(getattr(settings, "retry_after_seconds", 1))}


async def _busy(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ServiceBusyError):
        raise exc
    return error_response(
        503,
        "The server is handling too many requests right now; please retry after a moment.",
        code="server_busy",
        headers=_retry_after(request),
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """The database is unreachable, locked past the busy timeout or out of connections: 503."""
    if isinstance(exc, DataError):
        return error_response(
            400, "A value in the request cannot be stored or compared.", code="invalid_value"
        )
    if not isinstance(exc, DBAPIError | PoolTimeoutError | DisconnectionError):
        raise exc
    if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError | InterfaceError):
        return await _unhandled(request, exc)
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503,
        "The database is unavailable right now; please retry after a moment.",
        code="database_unavailable",
        headers=_retry_after(request),
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    request_id = getattr(request.state, "request_id", None) or new_request_id()
    return error_response(
        500,
        "The server had an error while processing your request.",
        headers={REQUEST_ID_HEADER: request_id},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the envelope for our errors, Starlette/FastAPI errors and unhandled ones."""
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ServiceBusyError, _busy)
    for db_error in (DBAPIError, PoolTimeoutError, DisconnectionError):
        app.add_exception_handler(db_error, _database_error)
    app.add_exception_handler(Exception, _unhandled)


def new_request_id() -> str:
    """A fresh request id."""
    return f"req_{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Pure ASGI middleware: keeps a client's `x-request-id` or makes one, echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER.encode())
        request_id = incoming.decode("latin-1")[:128] if incoming else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
