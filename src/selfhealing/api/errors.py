"""Every API error is ``{"error": {"code": ..., "message": ...}}``, never a 500.

Handlers turn the library's exceptions and FastAPI's own errors into 4xx
answers that say what was wrong and where. Anything unexpected is logged
with its traceback and answered as a 500 in the same shape, without the
traceback.
"""

from __future__ import annotations

import logging
import re

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from selfhealing.api.responses import JSON
from selfhealing.exceptions import (
    ConfigError,
    SelfHealingError,
    UnknownNameError,
)


__all__ = ["ApiError", "error_response", "install_error_handlers"]

_log = logging.getLogger("selfhealing.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error the API answers as-is."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSON:
    return JSON(
        {
            "error": {
                "code": code or _CODES.get(status, "error"),
                "message": message,
            }
        },
        status_code=status,
        headers=dict(headers or {}),
    )


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    where = ".".join(parts)
    source = loc[0] if loc else "body"
    return f"{source} field {where}" if where else str(source)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    problems = []
    status = 422
    for item in exc.errors():
        if item.get("type") == "json_invalid":
            status = 400
            problems.append(
                "malformed JSON body: "
                + str(item.get("ctx", {}).get("error", ""))
            )
            continue
        message = str(item.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if item.get("type") == "missing":
            message = "is required"
        problems.append(f"{_location(tuple(item.get('loc', ())))}: {message}")
    return status, "; ".join(problems) or "invalid request"


_NOT_FOUND = 404
_METHOD_NOT_ALLOWED = 405


def _library_status(exc: SelfHealingError) -> int:
    if isinstance(exc, UnknownNameError):
        return _NOT_FOUND
    if isinstance(exc, ConfigError):
        return 422
    return 409  # refused in the current state (e.g. BreakerResetRefused)


def _starlette_message(exc: StarletteHTTPException) -> str:
    message = exc.detail if isinstance(exc.detail, str) else "error"
    if exc.status_code == _NOT_FOUND and message == "Not Found":
        return "no such route; see /docs for the API"
    if exc.status_code == _METHOD_NOT_ALLOWED:
        return "method not allowed on this route; see /docs"
    return message


def _allowed_methods(request: Request) -> str:
    """The documented methods of the path's most specific template.

    Starlette names only the first matching route's methods. A literal
    path (``/api/tasks/pause-all``) wins over a template that also matches
    it (``/api/tasks/{task_id}``), as the OpenAPI document describes it.
    """
    app = request.app
    table: list[tuple[int, re.Pattern[str], list[str]]] | None = getattr(
        app.state, "selfheal_allow_table", None
    )
    if table is None:
        table = [
            (
                path.count("{"),
                compile_path(path)[0],
                sorted(m.upper() for m in operations),
            )
            for path, operations in app.openapi().get("paths", {}).items()
        ]
        app.state.selfheal_allow_table = table
    path = request.url.path
    matches = [
        (params, ms) for params, pattern, ms in table if pattern.match(path)
    ]
    if not matches:
        return ""
    fewest = min(params for params, _ in matches)
    methods = {m for params, ms in matches if params == fewest for m in ms}
    return ", ".join(sorted(methods))


async def _handle(request: Request, exc: Exception) -> JSON:
    """One dispatcher for every exception type the app registers."""
    if isinstance(exc, ApiError):
        return error_response(
            exc.status, exc.message, code=exc.code, headers=exc.headers
        )
    if isinstance(exc, RequestValidationError):
        status, message = _validation_message(exc)
        return error_response(status, message)
    if isinstance(exc, StarletteHTTPException):
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == _METHOD_NOT_ALLOWED:
            headers["Allow"] = _allowed_methods(request)
        return error_response(
            exc.status_code, _starlette_message(exc), headers=headers
        )
    if isinstance(exc, SelfHealingError):
        return error_response(_library_status(exc), str(exc))
    _log.exception(
        "unhandled error on %s %s", request.method, request.url.path
    )
    return error_response(500, "internal error; the daemon logged the details")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on *app* (also used by the embedding)."""
    for exc_type in (
        ApiError,
        RequestValidationError,
        StarletteHTTPException,
        SelfHealingError,
        Exception,
    ):
        app.add_exception_handler(exc_type, _handle)
