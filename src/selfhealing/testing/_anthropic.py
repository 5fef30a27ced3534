"""FakeAnthropic: a local, scriptable fake of the Anthropic Messages API.

It speaks the real API's wire format (``POST /v1/messages``, the error body,
``request-id`` and ``anthropic-ratelimit-*`` headers), so tests drive the
official ``anthropic`` SDK against it with ``base_url=fake.url``. Standard
library only: it ships in the package for users' tests too.

Each request is checked in this order: unknown path or method (404), body
over 32 MB (413), no or unknown key (401), no ``anthropic-version`` header
(400), invalid body or ``tool_choice`` (400). Rejected requests are recorded
but consume no script: a script says what the service answers to requests
it accepts.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import socket
import socketserver
import sys
import threading
import time

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit


__all__ = ["FakeAnthropic", "RecordedRequest", "Reply"]

_MAX_BODY = 32 * 1024 * 1024  # the real API's request size limit
_POLL_INTERVAL = 0.05  # bounds how long server.shutdown() waits
_STOP_BUDGET = 1.0  # stop() gives handler threads this long to finish
_STATUSES = range(100, 600)
_SUCCESS = range(200, 300)
_SERVER_ERRORS = range(500, 600)
_DIAGNOSIS = "diagnosis from the fake"
_TEXT = "text from the fake"
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_MESSAGES = {
    400: "Invalid request.",
    401: "invalid x-api-key",
    402: "Your credit balance is too low to access the Anthropic API.",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found.",
    409: "Conflict.",
    413: "Request exceeds the maximum allowed number of bytes.",
    429: "This request would exceed your account's rate limit. Please try again later.",
    500: "Internal server error",
    503: "Service unavailable.",
    504: "Request timed out.",
    529: "Overloaded",
}
# Plausible per-minute limits for the anthropic-ratelimit-* headers.
_LIMITS = {
    "requests": 50,
    "tokens": 38_000,
    "input-tokens": 30_000,
    "output-tokens": 8_000,
}
# One value of each JSON Schema type, for generated tool input.
_SAMPLES: dict[str, Any] = {
    "string": _DIAGNOSIS,
    "number": 0.9,
    "integer": 1,
    "boolean": True,
    "null": None,
    "array": [],
}
_TOOL_CHOICES = ("auto", "any", "tool", "none")


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer; the defaults give the default behaviour."""

    status: int = 200
    retry_after: float | None = None
    retry_after_ms: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error_code: str | None = None
    delay: float = 0.0
    raw_body: bytes | None = None
    tool_input: Mapping[str, Any] | None = None
    text: str | None = None
    stop_reason: str | None = None
    drop: bool = False

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"status must be 100..599, got {self.status}")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it (header names in lower case)."""

    key: str | None
    path: str
    headers: Mapping[str, str]
    body: Any
    t: float


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a handler thread sends back: decided by FakeAnthropic."""

    status: int
    headers: Mapping[str, str]
    payload: bytes
    delay: float = 0.0
    drop: bool = False


class FakeAnthropic:
    """A Messages API on 127.0.0.1 that answers from per-key scripts.

    An accepted request takes the next :class:`Reply` from its key's script,
    then from the :meth:`script_all` queue, else the default ``Reply()``: a
    schema-valid ``tool_use`` when ``tool_choice`` forces a tool, a text
    block otherwise.
    """

    def __init__(
        self,
        keys: Iterable[str] = (),
        *,
        default_tool_input: Mapping[str, Any] | None = None,
    ) -> None:
        self.default_tool_input = default_tool_input
        self.requests: list[RecordedRequest] = []
        self._keys = set(keys)
        self._scripts: dict[str, deque[Reply]] = {}
        self._shared: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeAnthropic is already running")
        self._server = _Server(self._answer)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_POLL_INTERVAL,),
            name="FakeAnthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; delayed requests wake and lose their connection."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        server.close(thread)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL to give the SDK; it appends ``/v1/messages``."""
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not running: call start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_key(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def script(self, key: str, *replies: Reply) -> None:
        """Queue *replies* for requests made with *key*, in order."""
        with self._lock:
            self._scripts.setdefault(key, deque()).extend(replies)

    def script_all(self, *replies: Reply) -> None:
        """Queue *replies* for any key whose own script is empty."""
        with self._lock:
            self._shared.extend(replies)

    def requests_for(self, key: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.key == key]

    def reset(self) -> None:
        """Forget recorded requests and pending scripts; keys stay."""
        with self._lock:
            # Cleared in place, so a test's reference to the list stays live.
            self.requests.clear()
            self._scripts.clear()
            self._shared.clear()

    def _answer(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        raw: bytes | None,
        *,
        arrived: float,
    ) -> _Answer:
        """Record one request and decide the answer (runs in its thread)."""
        path = urlsplit(target).path
        key = _key_from(headers)
        body = _parse_json(raw)
        with self._lock:
            self.requests.append(
                RecordedRequest(key, path, headers, body, arrived)
            )
            known = key in self._keys
        problems = _problems(
            method, path, headers, key=key, known=known, raw=raw, body=body
        )
        if problem := next(problems, None):
            return _error(*problem, close=raw is None)
        reply = self._next_reply(key)
        if reply.raw_body is not None:
            return _answer(reply, reply.raw_body, "text/html; charset=utf-8")
        if reply.status not in _SUCCESS:
            return _error(reply.status, None, reply=reply)
        message = _message(body, reply, self.default_tool_input, raw)
        return _answer(reply, json.dumps(message).encode())

    def _next_reply(self, key: str | None) -> Reply:
        with self._lock:
            own = self._scripts.get(key) if key is not None else None
            if own:
                return own.popleft()
            if self._shared:
                return self._shared.popleft()
        return Reply()


# -- the server: threads, connections, shutdown -------------------------------


class _Decide(Protocol):
    def __call__(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        raw: bytes | None,
        *,
        arrived: float,
    ) -> _Answer: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, decide: _Decide) -> None:
        self.decide = decide
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's name, which can stall
        # for seconds without DNS; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def track(self, connection: socket.socket) -> None:
        with self._lock:
            self._handlers.add(threading.current_thread())
            self._connections.add(connection)
        if self.stopping.is_set():  # accepted while close() ran
            _shutdown(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._handlers.discard(threading.current_thread())

    def close(self, thread: threading.Thread) -> None:
        deadline = time.monotonic() + _STOP_BUDGET
        # Set first: delayed handlers wake and drop their request unanswered,
        # as a server going away mid-request would.
        self.stopping.set()
        self.shutdown()
        with self._lock:
            connections = list(self._connections)
            handlers = list(self._handlers)
        # Idle keep-alive connections park their thread in readline(); a
        # socket shutdown makes it read EOF and return.
        for connection in connections:
            _shutdown(connection)
        self.server_close()
        for waiting in (thread, *handlers):
            waiting.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are routine here;
        # anything else is a bug in the fake, so it is still printed.
        if not isinstance(sys.exception(), OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server_version = "FakeAnthropic"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, *args: Any) -> None:
        pass  # keep test output clean

    # Every method is recorded; only POST reaches the Messages API.
    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        arrived = time.monotonic()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            lower = name.lower()
            headers[lower] = (
                f"{headers[lower]}, {value}" if lower in headers else value
            )
        raw = self._read_body(headers)
        answer = self.server.decide(
            self.command, self.path, headers, raw, arrived=arrived
        )
        waited = answer.delay > 0 and self.server.stopping.wait(answer.delay)
        if waited or answer.drop:
            self.close_connection = True  # close without a byte of answer
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.payload)

    def _read_body(self, headers: Mapping[str, str]) -> bytes | None:
        """The request body; None when it exceeds the size limit."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = int(headers.get("content-length") or "0")
        return None if length > _MAX_BODY else self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while chunk := int(self.rfile.readline().split(b";")[0], 16):
            size += chunk
            if size > _MAX_BODY:
                return None
            chunks.append(self.rfile.read(chunk))
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline() not in {b"\r\n", b"\n", b""}:
            pass  # skip trailers
        return b"".join(chunks)


# -- validation ---------------------------------------------------------------


def _problems(
    method: str,
    path: str,
    headers: Mapping[str, str],
    *,
    key: str | None,
    known: bool,
    raw: bytes | None,
    body: Any,
) -> Iterator[tuple[int, str]]:
    """Yield what the real API would refuse the request for, first first."""
    if method != "POST" or not path.rstrip("/").endswith("/v1/messages"):
        yield 404, f"Not found: {method} {path}"
    if raw is None:
        yield 413, _MESSAGES[413]
    if key is None:
        yield 401, "x-api-key header is required"
    if not known:
        yield 401, "invalid x-api-key"
    if "anthropic-version" not in headers:
        yield 400, "anthropic-version: header is required"
    if not raw:
        yield 400, "Request body is required"
    if not isinstance(body, dict):
        yield 400, "Request body is not a valid JSON object"
        return
    yield from _body_problems(body)
    yield from _tool_problems(body)


def _body_problems(body: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    missing = [n for n in ("model", "max_tokens", "messages") if n not in body]
    if missing:
        yield 400, f"{missing[0]}: Field required"
        return
    if not isinstance(body["model"], str):
        yield 400, "model: Input should be a valid string"
    max_tokens = body["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        yield 400, "max_tokens: Input should be a valid integer"
    elif max_tokens < 1:
        yield 400, "max_tokens: Input should be greater than or equal to 1"
    if not isinstance(body["messages"], list):
        yield 400, "messages: Input should be a valid list"


def _tool_problems(body: Mapping[str, Any]) -> Iterator[tuple[int, str]]:
    tools = body.get("tools", [])
    if not isinstance(tools, list) or not all(
        isinstance(tool, dict) and isinstance(tool.get("name"), str)
        for tool in tools
    ):
        yield 400, "tools: each tool must be an object with a string name"
        return
    choice = body.get("tool_choice")
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        yield 400, "tool_choice.type: must be one of auto, any, tool, none"
        return
    names = [tool["name"] for tool in tools]
    if choice["type"] == "any" and not names:
        yield 400, "tool_choice: 'any' requires tools"
    if choice["type"] == "tool" and choice.get("name") not in names:
        name = choice.get("name")
        yield 400, f"tool_choice.name: tool {name!r} not found in tools"


# -- answers ------------------------------------------------------------------


def _error(
    status: int,
    message: str | None,
    *,
    reply: Reply | None = None,
    close: bool = False,
) -> _Answer:
    """The real API's error body, ``error.details`` only when scripted."""
    reply = reply or Reply(status)
    error: dict[str, Any] = {
        "type": _ERROR_TYPES.get(status)
        or (
            "api_error"
            if status in _SERVER_ERRORS
            else "invalid_request_error"
        ),
        "message": message or _MESSAGES.get(status, f"Error {status}"),
    }
    if reply.error_code is not None:
        error["details"] = {"error_code": reply.error_code}
    request_id = _new_id("req_")
    body = {"type": "error", "error": error, "request_id": request_id}
    extra = {"connection": "close"} if close else {}
    return _answer(
        reply, json.dumps(body).encode(), request_id=request_id, extra=extra
    )


def _answer(
    reply: Reply,
    payload: bytes,
    content_type: str = "application/json",
    *,
    request_id: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> _Answer:
    headers = {
        "content-type": content_type,
        "request-id": request_id or _new_id("req_"),
        **_rate_limit_headers(reply),
        **(extra or {}),
    }
    if reply.retry_after is not None:
        headers["retry-after"] = _number(reply.retry_after)
    if reply.retry_after_ms is not None:
        headers["retry-after-ms"] = _number(reply.retry_after_ms)
    # Scripted headers win, whatever case they are written in.
    headers.update({k.lower(): v for k, v in reply.headers.items()})
    headers["content-length"] = str(len(payload))
    return _Answer(reply.status, headers, payload, reply.delay, reply.drop)


def _message(
    body: Mapping[str, Any],
    reply: Reply,
    default_tool_input: Mapping[str, Any] | None,
    raw: bytes | None,
) -> dict[str, Any]:
    tool = None if reply.text is not None else _forced_tool(body, reply)
    content: list[dict[str, Any]]
    if tool is None:
        content = [{"type": "text", "text": reply.text or _TEXT}]
        stop_reason = "end_turn"
    else:
        tool_input = reply.tool_input
        if tool_input is None:
            tool_input = default_tool_input
        if tool_input is None:
            tool_input = _from_schema(tool.get("input_schema", {}))
        block_id = _new_id("toolu_")
        content = [
            {
                "type": "tool_use",
                "id": block_id,
                "name": tool["name"],
                "input": dict(tool_input),
            }
        ]
        stop_reason = "tool_use"
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": reply.stop_reason or stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": max(1, len(raw or b"") // 4),
            "output_tokens": max(1, len(json.dumps(content)) // 4),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _forced_tool(
    body: Mapping[str, Any], reply: Reply
) -> Mapping[str, Any] | None:
    """The tool the model calls, or None for a text answer."""
    tools: list[Mapping[str, Any]] = body.get("tools", [])
    choice: Mapping[str, Any] = body.get("tool_choice") or {"type": "auto"}
    if choice["type"] == "tool":
        return next(t for t in tools if t["name"] == choice["name"])
    # "any" obliges the model to call some tool; under "auto" a scripted
    # tool_input says it chose to. The first tool stands in for its pick.
    if tools and (
        choice["type"] == "any"
        or (choice["type"] == "auto" and reply.tool_input is not None)
    ):
        return tools[0]
    return None


def _from_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A minimal input valid for *schema*: its required properties only."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    return {
        name: _sample(properties.get(name, {}))
        for name in schema.get("required", [])
    }


def _sample(schema: Mapping[str, Any]) -> Any:
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "string")
    if isinstance(kind, list):  # ["string", "null"]: any non-null member
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return _from_schema(schema)
    return _SAMPLES.get(kind)


def _rate_limit_headers(reply: Reply) -> dict[str, str]:
    """``anthropic-ratelimit-*``; a 429 exhausts them until its retry time."""
    exhausted = reply.status == HTTPStatus.TOO_MANY_REQUESTS
    if reply.retry_after_ms is not None:
        wait = reply.retry_after_ms / 1000
    elif reply.retry_after is not None:
        wait = reply.retry_after
    else:
        wait = 60.0  # the limits are per minute
    reset = datetime.now(UTC) + timedelta(seconds=math.ceil(wait))
    stamp = reset.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers: dict[str, str] = {}
    for name, limit in _LIMITS.items():
        prefix = f"anthropic-ratelimit-{name}"
        headers[f"{prefix}-limit"] = str(limit)
        headers[f"{prefix}-remaining"] = "0" if exhausted else str(limit - 1)
        headers[f"{prefix}-reset"] = stamp
    return headers


# -- small helpers ------------------------------------------------------------


def _key_from(headers: Mapping[str, str]) -> str | None:
    """The key from ``x-api-key`` (SDK 0.x/1.x) or ``Bearer`` (SDK 2.x)."""
    if key := headers.get("x-api-key"):
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def _parse_json(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError is a ValueError too
        return None


def _number(value: float) -> str:
    """7.0 -> "7", 1.5 -> "1.5": whole numbers look like the real header."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _new_id(prefix: str) -> str:
    return f"{prefix}01{secrets.token_hex(11)}"


def _shutdown(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by its handler
        connection.shutdown(socket.SHUT_RDWR)
