"""Service errors; the API renders them as the OpenAI error envelope."""

from __future__ import annotations


class StoreError(Exception):
    """Base class: a message for the client plus the OpenAI `param` and `code`."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequestError(StoreError):
    """The request cannot be done as asked (bad value, wrong state); HTTP 400."""


class NotFoundError(StoreError):
    """No such object in the caller's project; HTTP 404."""

    status_code = 404
    error_type = "not_found_error"

    def __init__(self, kind: str, object_id: str, *, param: str | None = None) -> None:
        super().__init__(f"No {kind} found with id '{object_id}'.", param=param, code=None)
        self.kind = kind
        self.object_id = object_id


class AuthenticationError(StoreError):
    """Missing, unknown or revoked API key; HTTP 401."""

    status_code = 401
    error_type = "authentication_error"


class PayloadTooLargeError(StoreError):
    """An upload passed the size limit; HTTP 413."""

    status_code = 413


class DamagedObjectError(StoreError):
    """A stored object's bytes are missing or fail their recorded size or sha256; HTTP 500."""

    status_code = 500
    error_type = "server_error"
