"""GET /api/events/stream: Server-Sent Events from a live daemon."""

from __future__ import annotations

import itertools
import json
import time

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from selfhealing.api import stream
from selfhealing.api.stream import QUEUE_SIZE, StreamClient, status_digests
from selfhealing.events import Event, EventBus, EventKind
from support import LiveDaemon


ADMIN = {"Authorization": "Bearer s3cret"}
WATCHED = {
    "targets": [
        {
            "name": "always-ok",
            "check": {
                "type": "command",
                "command": ["true"],
                "interval": "1s",
            },
        }
    ]
}


@dataclass(frozen=True)
class Message:
    """One server-sent event."""

    event: str
    data: Any


class Reader:
    """Parses messages off a stream, on the test's thread (closing a socket
    that another thread is reading would not disconnect it at once)."""

    def __init__(self, response: httpx.Response) -> None:
        self._messages = self._parse(response.iter_lines())

    @staticmethod
    def _parse(lines: Iterator[str]) -> Iterator[Message]:
        event, data = "message", list[str]()
        for line in lines:
            if not line:
                if data:
                    yield Message(event, json.loads("\n".join(data)))
                event, data = "message", []
            elif line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))

    def next(
        self, match: Callable[[Message], bool], timeout: float = 2.0
    ) -> Message:
        """The next message *match* accepts, within *timeout* seconds."""
        deadline = time.monotonic() + timeout
        for message in self._messages:
            if match(message):
                return message
            if time.monotonic() > deadline:
                break
        else:
            pytest.fail("the stream ended")
        pytest.fail(f"no matching message within {timeout} s")

    def ends(self) -> bool:
        """Whether the stream ends (rather than times out) from here."""
        try:
            for _ in self._messages:
                pass
        except httpx.ReadTimeout:
            return False
        return True


@contextmanager
def open_stream(live: LiveDaemon) -> Iterator[tuple[httpx.Response, Reader]]:
    """A streaming GET whose reads time out after 2 s (never a hang)."""
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=2)) as client,
        client.stream("GET", live.url + "/api/events/stream") as response,
    ):
        yield response, Reader(response)


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _is(event: str) -> Callable[[Message], bool]:
    return lambda m: event == m.event


class TestEventStream:
    def test_headers_and_initial_status(self, live: LiveDaemon) -> None:
        """The stream is text/event-stream, uncached, and starts with the status."""
        with open_stream(live) as (response, reader):
            first = reader.next(lambda _: True)
            assert 200 == response.status_code
            assert (
                "text/event-stream",
                "no-cache",
                "no",
            ) == (
                response.headers["content-type"].split(";")[0],
                response.headers["cache-control"],
                response.headers["x-accel-buffering"],
            )
        assert "status" == first.event
        assert "healthy" == first.data["status"]
        assert {"selfHealing", "circuitBreakers", "issues"} <= set(first.data)

    def test_operator_action_streams_audit_then_status(
        self, start_live: Callable[..., LiveDaemon]
    ) -> None:
        """Pausing all tasks streams its audit event and a changed status within 2 s."""
        live = start_live(WATCHED)
        with open_stream(live) as (_, reader):
            reader.next(_is("status"))
            live.post("/api/tasks/pause-all", json={"reason": "drill"})
            audit = reader.next(
                lambda m: (
                    "audit" == m.event and "operator.action" == m.data["kind"]
                )
            )
            status = reader.next(_is("status"))
        assert ("paused 2 tasks", "drill") == (  # and the sampler
            audit.data["message"],
            audit.data["reason"],
        )
        assert audit.data["at"].endswith("Z")
        assert isinstance(audit.data["atEpoch"], float)
        assert ["paused", "paused"] == [
            t["state"] for t in status.data["backgroundTasks"]["tasks"]
        ]

    def test_dormant_engine_streams_critical_status(
        self, live: LiveDaemon
    ) -> None:
        """Entering dormant mode streams the audit event and a critical status."""
        with open_stream(live) as (_, reader):
            reader.next(_is("status"))
            live.on_loop(lambda: live.runtime.engine.enter_dormant("drill"))
            audit = reader.next(
                lambda m: (
                    "audit" == m.event
                    and "engine.dormant_entered" == m.data["kind"]
                )
            )
            status = reader.next(_is("status"))
        assert "drill" == audit.data["reason"]
        assert ("critical", "drill") == (
            status.data["status"],
            status.data["selfHealing"]["dormantReason"],
        )

    def test_events_from_another_thread_arrive(self, live: LiveDaemon) -> None:
        """An event published off the loop thread reaches the stream."""
        with open_stream(live) as (_, reader):
            reader.next(_is("status"))
            live.runtime.bus.publish(
                Event(
                    EventKind.OPERATOR_ACTION,
                    time.time(),
                    "Test",
                    "from a worker thread <script>",
                )
            )
            audit = reader.next(_is("audit"))
        assert "from a worker thread <script>" == audit.data["message"]

    def test_slow_client_gets_a_gap(self, live: LiveDaemon) -> None:
        """Events beyond the client's queue are dropped oldest first and reported as a gap."""
        extra = 40

        def burst() -> None:
            for i in range(QUEUE_SIZE + extra):
                live.runtime.bus.publish(
                    Event(EventKind.OPERATOR_ACTION, time.time(), "T", str(i))
                )

        with open_stream(live) as (_, reader):
            reader.next(_is("status"))
            live.on_loop(burst)
            gap = reader.next(_is("gap"))
            first = reader.next(_is("audit"))
        assert {"dropped": extra} == gap.data
        assert str(extra) == first.data["message"]

    def test_keepalive_comment_when_quiet(
        self, live: LiveDaemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A quiet stream sends a keepalive comment."""
        monkeypatch.setattr(stream, "KEEPALIVE", 0.3)
        with open_stream(live) as (response, _):
            lines = response.iter_lines()
            assert ": keepalive" in itertools.islice(lines, 20)

    def test_subscriber_removed_after_disconnect(
        self, live: LiveDaemon
    ) -> None:
        """Closing the stream removes its bus subscriber."""
        before = len(live.runtime.bus)
        with open_stream(live) as (_, reader):
            reader.next(_is("status"))
            assert before + 1 == len(live.runtime.bus)
        assert wait_for(lambda: before == len(live.runtime.bus))

    def test_stream_ends_when_the_daemon_stops(self, live: LiveDaemon) -> None:
        """Stopping the daemon ends an open stream promptly instead of hanging."""
        with open_stream(live) as (_, reader):
            reader.next(_is("status"))
            started = time.monotonic()
            live.stop()
            elapsed = time.monotonic() - started
            assert reader.ends()
        assert elapsed < 3

    def test_a_401_does_not_open_a_stream_for_actions(
        self, start_live: Callable[..., LiveDaemon]
    ) -> None:
        """Reading the stream needs no token even when actions do."""
        live = start_live(environ={"SELFHEAL_ADMIN_TOKEN": "s3cret"})
        with open_stream(live) as (response, reader):
            assert 200 == response.status_code
            assert "status" == reader.next(lambda _: True).event
            assert 401 == live.post("/api/tasks/pause-all").status_code
            assert (
                200
                == live.post("/api/tasks/pause-all", headers=ADMIN).status_code
            )
            reader.next(_is("audit"))


class TestStreamClient:
    def test_overflow_drops_oldest_and_counts(self) -> None:
        """A full queue drops its oldest events and reports how many."""
        bus = EventBus()
        loop = _ClosedLoop()
        client = StreamClient(bus, loop, size=3)  # type: ignore[arg-type]
        for i in range(5):
            bus.publish(Event(EventKind.OPERATOR_ACTION, i, "Test", str(i)))
        events, dropped = client.drain()
        assert (["2", "3", "4"], 2) == ([e.message for e in events], dropped)
        assert ([], 0) == client.drain()

    def test_close_is_idempotent(self) -> None:
        """Closing twice unsubscribes once and leaves the bus empty."""
        bus = EventBus()
        client = StreamClient(bus, _ClosedLoop())  # type: ignore[arg-type]
        assert 1 == len(bus)
        client.close()
        client.close()
        assert 0 == len(bus)

    def test_volatile_fields_are_not_news(self) -> None:
        """Counters that move on every probe change only the full digest."""
        before = {"timestamp": "a", "targets": [{"checks": 1, "health": "ok"}]}
        ticked = {"timestamp": "b", "targets": [{"checks": 2, "health": "ok"}]}
        broken = {"timestamp": "b", "targets": [{"checks": 2, "health": "no"}]}
        (news, full), (news2, full2), (news3, _) = map(
            status_digests, (before, ticked, broken)
        )
        assert (True, False, False) == (
            news == news2,
            full == full2,
            news == news3,
        )


class _ClosedLoop:
    """A loop stand-in whose call_soon_threadsafe fails as a closed loop's does."""

    def call_soon_threadsafe(self, *_: object) -> None:
        raise RuntimeError("Event loop is closed")
