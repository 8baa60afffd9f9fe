"""The OpenAPI document as clients see the API: errors in the OpenAI envelope, never a 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ERROR_REF = "#/components/schemas/ErrorResponse"
_ERRORS = {
    "400": "Invalid request (`invalid_request_error`, `param` names the field)",
    "401": "Missing, unknown or revoked API key (`authentication_error`)",
    "404": "No such object in the caller's project (`not_found_error`)",
    "503": "Busy or database unavailable (`server_error`); retry after `Retry-After` seconds",
}


class ErrorBody(BaseModel):
    """OpenAI's error object: all four keys are always present."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """`{"error": {message, type, param, code}}`."""

    error: ErrorBody


def _error_response(description: str) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": ERROR_REF}}}
    return {"description": description, "content": content}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with 422s replaced by the envelope's 400, 401, 404 and 503."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    envelope = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(envelope.pop("$defs"))
    components["ErrorResponse"] = envelope
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _ERRORS.items():
                if status == "401" and not path.startswith("/v1"):
                    continue
                responses.setdefault(status, _error_response(description))
    app.openapi_schema = schema
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` build the document above."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
