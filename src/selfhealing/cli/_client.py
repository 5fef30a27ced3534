"""Talking to a running daemon: the HTTP client of the operator commands.

One sync ``httpx.Client`` per command, JSON in and out. Every request names
the operator (``X-Selfheal-Actor: user@host (cli)``) so the audit trail
says who acted, and carries ``Authorization: Bearer TOKEN`` when a token is
given. Failures become two exceptions, which :func:`session` turns into one
line on stderr and an exit code: 3 when the daemon cannot be reached, 4
when it answered with an error. The token is never printed.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Annotated, Any, Self

import httpx
import typer

from rich.console import Console


__all__ = [
    "DEFAULT_URL",
    "EXIT_DAEMON_ERROR",
    "EXIT_UNREACHABLE",
    "TIMEOUT",
    "TOKEN_ENV",
    "URL_ENV",
    "Connection",
    "DaemonClient",
    "DaemonError",
    "TokenOption",
    "UnreachableError",
    "UrlOption",
    "actor",
    "echo_json",
    "session",
    "sleep",
    "stdout",
]

DEFAULT_URL = "http://127.0.0.1:3001"
URL_ENV = "SELFHEAL_URL"
TOKEN_ENV = "SELFHEAL_ADMIN_TOKEN"  # noqa: S105 (a variable name)
TIMEOUT = 5.0
EXIT_UNREACHABLE = 3
EXIT_DAEMON_ERROR = 4
_UNAUTHORIZED = 401
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")

#: How the polling commands (``watch``, ``events --follow``) wait; tests
#: replace it to run without real time passing.
sleep: Callable[[float], None] = time.sleep

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help=(f"The daemon's address (env {URL_ENV}; default {DEFAULT_URL})."),
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help=(
            f"Admin token, sent as a bearer token (env {TOKEN_ENV}); "
            "needed when the daemon has one. Never printed."
        ),
        show_default=False,
    ),
]


class UnreachableError(Exception):
    """No answer from the daemon at all (refused, timed out, bad URL)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the daemon at {url} ({reason})")
        self.url = url
        self.reason = reason


class DaemonError(Exception):
    """The daemon answered with an error (``{"error": {code, message}}``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Connection:
    """``--url`` / ``--token`` given to a command group, for its commands."""

    url: str | None = None
    token: str | None = None


def actor() -> str:
    """``user@host (cli)``: who is acting, for the audit trail."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    host = socket.gethostname() or "localhost"
    return f"{user}@{host} (cli)".encode("ascii", "replace").decode()


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {TIMEOUT:g}s"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return f"invalid URL: {exc}"
    text = _ERRNO.sub("", str(exc).strip()) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _error(response: httpx.Response) -> DaemonError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return DaemonError(
            response.status_code,
            str(error.get("code", "error")),
            error["message"],
        )
    return DaemonError(
        response.status_code,
        "unexpected",
        f"HTTP {response.status_code} from {response.url}, not a selfheal "
        "error; is this the selfheal daemon?",
    )


class DaemonClient:
    """A sync client for one daemon; use it as a context manager."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"X-Selfheal-Actor": actor(), "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(timeout=TIMEOUT, headers=headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        """The decoded JSON answer; UnreachableError or DaemonError."""
        try:
            response = self._http.request(
                method, self.url + path, params=params, json=body
            )
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise UnreachableError(self.url, _reason(exc)) from None
        if response.is_error:
            raise _error(response)
        try:
            return response.json()
        except ValueError:
            raise DaemonError(
                response.status_code,
                "unexpected",
                f"{response.url} answered something other than JSON; is "
                "this the selfheal daemon?",
            ) from None

    def get(
        self, path: str, params: Mapping[str, str | int] | None = None
    ) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PUT", path, body=body)

    def delete(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self.request("DELETE", path, body=body)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _resolve(
    url: str | None, token: str | None, ctx: typer.Context | None
) -> tuple[str, str | None]:
    """The command's option, else its group's, else the environment."""
    group = ctx.find_object(Connection) if ctx is not None else None
    if group is not None:
        url = url or group.url
        token = token or group.token
    return (
        url or os.environ.get(URL_ENV) or DEFAULT_URL,
        token or os.environ.get(TOKEN_ENV) or None,
    )


def _fail(message: str, hint: str | None, code: int) -> typer.Exit:
    typer.echo(f"selfheal: {message}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    return typer.Exit(code)


@contextmanager
def session(
    url: str | None = None,
    token: str | None = None,
    *,
    ctx: typer.Context | None = None,
    hints: Mapping[int, str] | None = None,
) -> Iterator[DaemonClient]:
    """A client for the command's daemon; errors end the command.

    Unreachable: one line on stderr, exit 3. An error answer: its message
    (and the hint for its HTTP status, if any) on stderr, exit 4.
    """
    address, secret = _resolve(url, token, ctx)
    hints = {
        _UNAUTHORIZED: (
            f"pass --token TOKEN or set {TOKEN_ENV} to the daemon's admin "
            "token"
        ),
        **(hints or {}),
    }
    try:
        with DaemonClient(address, secret) as client:
            yield client
    except UnreachableError as exc:
        raise _fail(
            f"{exc}; is 'selfheal run' running?", None, EXIT_UNREACHABLE
        ) from None
    except DaemonError as exc:
        raise _fail(
            exc.message, hints.get(exc.status), EXIT_DAEMON_ERROR
        ) from None


def stdout() -> Console:
    """A console on the current stdout (colour only on a terminal)."""
    return Console(highlight=False, soft_wrap=True)


def echo_json(document: object, *, indent: int | None = 2) -> None:
    """Print *document* as JSON (pretty by default), as the daemon sent it."""
    typer.echo(json.dumps(document, indent=indent, ensure_ascii=False))
