"""``GET /api/events/stream``: the audit trail and the status, live (SSE).

On connect the client gets ``event: status`` with the current status
document, then, as things happen:

- ``event: audit`` for every Event published on the bus, in the shape of
  ``GET /api/events`` (``at`` as ISO 8601, ``atEpoch``; no ``id`` yet: the
  store assigns it when it writes);
- ``event: status`` when the status document changes: checked on each bus
  event and every second, at most five times a second. Counters that move
  on every probe (runs, latencies, uptimes) alone resend it every 5 s;
- ``event: gap`` when this client fell behind and its oldest queued events
  were dropped (``{"dropped": n}``): reload ``GET /api/events`` to catch up;
- a ``: keepalive`` comment every 15 s of silence.

The bus may publish on any thread: the subscriber only appends to a bounded,
locked deque and wakes the stream's loop. A stream ends when its client
goes away or when ``runtime.stopping`` is set (the server is shutting
down: uvicorn waits for open responses before it stops the app).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from fastapi import APIRouter, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from selfhealing.api.routes import RuntimeDep
from selfhealing.events import Event, EventBus
from selfhealing.runtime import Runtime
from selfhealing.store import AuditRecord


__all__ = [
    "KEEPALIVE",
    "MIN_STATUS_INTERVAL",
    "QUEUE_SIZE",
    "REFRESH_INTERVAL",
    "STATUS_TICK",
    "EventStreamResponse",
    "StreamClient",
    "router",
    "status_digests",
]

QUEUE_SIZE = 512
STATUS_TICK = 1.0
MIN_STATUS_INTERVAL = 0.2
REFRESH_INTERVAL = 5.0
KEEPALIVE = 15.0
RETRY_MS = 2000

# Fields that move on (nearly) every probe or tick: a change in these alone
# is not news, so it is sent on the slower refresh cadence.
_VOLATILE = frozenset(
    {
        "timestamp",
        "uptime",
        "runs",
        "lastRunAt",
        "nextRunAt",
        "lastDurationMs",
        "latencyMs",
        "lastCheck",
        "checks",
        "consecutiveSuccesses",
        "auditTrail",
        "halfOpenInFlight",
        "cooldownRemainingS",
        "resources",  # every sampling pass; its findings reach "issues"
    }
)

router = APIRouter()


class StreamClient:
    """One stream's subscription: a bounded queue fed from any thread.

    The bus callback appends under a lock (dropping the oldest event when
    full) and wakes the loop at most once per batch, so a burst of events
    costs one ``call_soon_threadsafe``.
    """

    def __init__(
        self,
        bus: EventBus,
        loop: asyncio.AbstractEventLoop,
        *,
        size: int = QUEUE_SIZE,
    ) -> None:
        self.wake = asyncio.Event()
        self._loop = loop
        self._lock = threading.Lock()
        self._queue: deque[Event] = deque()
        self._size = size
        self._dropped = 0
        self._wake_pending = False
        self._unsubscribe: Callable[[], None] | None = bus.subscribe(
            self.on_event
        )

    def on_event(self, event: Event) -> None:
        """The bus subscriber: cheap, thread-safe, never raises."""
        with self._lock:
            if len(self._queue) >= self._size:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(event)
            if self._wake_pending:
                return
            self._wake_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self._loop.call_soon_threadsafe(self.wake.set)

    def drain(self) -> tuple[list[Event], int]:
        """The queued events and how many were dropped since last time."""
        with self._lock:
            events = list(self._queue)
            dropped = self._dropped
            self._queue.clear()
            self._dropped = 0
            self._wake_pending = False
        return events, dropped

    def close(self) -> None:
        """Unsubscribe from the bus (idempotent)."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()


def _prune(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _digest(value: Any) -> bytes:
    encoded = orjson.dumps(
        value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )
    return hashlib.blake2b(encoded, digest_size=16).digest()


def status_digests(document: dict[str, Any]) -> tuple[bytes, bytes]:
    """(news, everything): digests of *document* without its volatile
    fields, and without its timestamp only."""
    full = {k: v for k, v in document.items() if k != "timestamp"}
    return _digest(_prune(document)), _digest(full)


def _frame(event: str, data: Any) -> bytes:
    payload = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


def _audit(event: Event) -> dict[str, Any]:
    """*event* in the shape of ``GET /api/events`` (without an id)."""
    record = AuditRecord.from_event(0, event).to_dict()
    del record["id"]
    return record


class _StatusPacer:
    """Decides when a status document is worth sending."""

    def __init__(self, document: dict[str, Any], now: float) -> None:
        self.news, self.full = status_digests(document)
        self.sent_at = now
        self.dirty = False

    def due_in(self, now: float) -> float | None:
        """Seconds until a pending check may run (None: none pending)."""
        if not self.dirty:
            return None
        return max(0.0, self.sent_at + MIN_STATUS_INTERVAL - now)

    def offer(self, document: dict[str, Any], now: float) -> bool:
        """Whether to send *document*; remembers it if so."""
        self.dirty = False
        news, full = status_digests(document)
        if news == self.news and (
            full == self.full or now - self.sent_at < REFRESH_INTERVAL
        ):
            return False
        self.news, self.full, self.sent_at = news, full, now
        return True


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()


def _drain(client: StreamClient) -> list[bytes]:
    """The queued events as frames, a gap first if some were dropped."""
    events, dropped = client.drain()
    frames = [_frame("gap", {"dropped": dropped})] if dropped else []
    frames.extend(_frame("audit", _audit(e)) for e in events)
    return frames


async def _frames(
    request: Request, runtime: Runtime, client: StreamClient
) -> AsyncIterator[bytes]:
    """The stream's body: see the module docstring."""
    loop = asyncio.get_running_loop()
    stopping = runtime.stopping
    watcher = loop.create_task(stopping.wait())
    watcher.add_done_callback(lambda _: client.wake.set())
    try:
        document = runtime.status()
        now = last_sent = loop.time()
        pacer = _StatusPacer(document, now)
        yield f"retry: {RETRY_MS}\n\n".encode() + _frame("status", document)
        next_tick = now + STATUS_TICK
        while not stopping.is_set():
            now = loop.time()
            pending = pacer.due_in(now)
            deadline = min(
                next_tick,
                last_sent + KEEPALIVE,
                now + (STATUS_TICK if pending is None else pending),
            )
            await _wait(client.wake, deadline - now)
            client.wake.clear()
            if stopping.is_set():
                break
            chunks = _drain(client)
            now = loop.time()
            pacer.dirty = pacer.dirty or bool(chunks) or now >= next_tick
            if now >= next_tick:
                next_tick = now + STATUS_TICK
                if await request.is_disconnected():
                    break
            if pacer.due_in(now) == 0.0:
                document = runtime.status()
                if pacer.offer(document, now):
                    chunks.append(_frame("status", document))
            if not chunks and now - last_sent >= KEEPALIVE:
                chunks.append(b": keepalive\n\n")
            if chunks:
                last_sent = now
                yield b"".join(chunks)
    finally:
        watcher.cancel()
        client.close()


class EventStreamResponse(StreamingResponse):
    """A StreamingResponse that always releases its bus subscription, even
    when the client leaves while the body generator is suspended."""

    def __init__(
        self, content: AsyncIterator[bytes], client: StreamClient
    ) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )
        self._client = client
        self._content = content

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._client.close()
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                await aclose()


@router.get(
    "/api/events/stream",
    tags=["audit"],
    # Not in the OpenAPI schema: an endless body would hang generic
    # clients (schema fuzzers, code generators' smoke tests).
    include_in_schema=False,
)
async def stream(request: Request, runtime: RuntimeDep) -> EventStreamResponse:
    """Server-Sent Events: status, audit, gap; see the module docstring."""
    client = StreamClient(runtime.bus, asyncio.get_running_loop())
    return EventStreamResponse(_frames(request, runtime, client), client)
