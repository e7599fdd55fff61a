"""Error bodies of the Device Management API: ``{"object": "error", "code", "type", "message",
"request_id"}`` (SPEC20 ErrorResponse; docs/vendors/pelion.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Literal

from simulators.pelion.wire import WireModel

__all__ = [
    "ERROR_TYPES",
    "ErrorBody",
    "ErrorField",
    "bad_request",
    "error_body",
    "forbidden",
    "new_request_id",
    "not_found",
    "unauthorized",
]


# --- Error bodies --------------------------------------------------------------------------


class ErrorField(WireModel):
    name: str
    message: str


class ErrorBody(WireModel):
    """``{"object": "error", "code", "type", "message", "request_id"}`` (SPEC20 ErrorResponse)."""

    object: Literal["error"] = "error"
    code: int
    type: str
    message: str
    request_id: str
    fields: list[ErrorField] | None = None


# The type each specialised error response always carries (SPEC20 "Always set to …").
ERROR_TYPES: dict[int, str] = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
}


def new_request_id() -> str:
    """32 hex characters, like ``0161991d63150242ac12000600000000``."""
    return uuid.uuid4().hex


def error_body(
    code: int,
    message: str,
    *,
    type: str | None = None,
    request_id: str | None = None,
    fields: Iterable[tuple[str, str]] = (),
) -> ErrorBody:
    field_list = [ErrorField(name=n, message=m) for n, m in fields]
    return ErrorBody(
        code=code,
        type=type or ERROR_TYPES.get(code, "error"),
        message=message,
        request_id=request_id or new_request_id(),
        fields=field_list or None,
    )


def bad_request(
    message: str, *, fields: Iterable[tuple[str, str]] = (), request_id: str | None = None
) -> ErrorBody:
    """400 ``validation_error``; ``fields`` name what failed (``body`` for the whole body)."""
    return error_body(400, message, fields=fields or [("body", message)], request_id=request_id)


def unauthorized(
    message: str = "Invalid access token.", *, request_id: str | None = None
) -> ErrorBody:
    return error_body(401, message, request_id=request_id)


def forbidden(
    message: str = "Authorization token used is not an API key.", *, request_id: str | None = None
) -> ErrorBody:
    return error_body(403, message, request_id=request_id)


def not_found(message: str = "Not Found.", *, request_id: str | None = None) -> ErrorBody:
    return error_body(404, message, request_id=request_id)
