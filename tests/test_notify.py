"""Notifications through apprise, delivered to a real webhook on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydantic
import pytest

from selfhealing import notify
from selfhealing.config import Config, NotificationsConfig, parse_config
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import ConfigError
from selfhealing.notify import (
    Notifier,
    base_url,
    mask_url,
    notifications_status,
)
from selfhealing.runtime import Runtime
from selfhealing.status import DORMANT_ISSUE
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

KEY_A = "sk-ant-api03-" + "a" * 40 + "1111"
KEY_B = "sk-ant-api03-" + "b" * 40 + "2222"
HOLD_TIMEOUT = 2.0  # the slow webhook answers after this, unless released


@dataclass(frozen=True)
class Received:
    """One POST the webhook got: its JSON, raw bytes, and fake-clock time."""

    payload: dict[str, Any]
    raw: bytes
    at: float


@dataclass
class Webhook:
    """A JSON webhook on 127.0.0.1 that apprise's ``json://`` posts to."""

    stamp: Callable[[], float]
    statuses: list[int] = field(default_factory=list)  # then 200s
    hold: threading.Event | None = None  # set: a slow (2 s) endpoint
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    @property
    def titles(self) -> list[str]:
        return [r.payload["title"] for r in self.received]

    def answer(self, raw: bytes) -> int:
        self.received.append(Received(json.loads(raw), raw, self.stamp()))
        if self.hold is not None:
            self.hold.wait(HOLD_TIMEOUT)
        return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture(name="webhook")
def _webhook(clock: FakeClock) -> Iterator[Webhook]:
    hook = Webhook(stamp=clock.monotonic)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            status = hook.answer(raw)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, args=(0.01,), daemon=True
    )
    thread.start()
    yield hook
    if hook.hold is not None:
        hook.hold.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(name="make_runtime")
def _make_runtime(
    tmp_path: Path, clock: FakeClock, webhook: Webhook
) -> Callable[..., Runtime]:
    """Build a Runtime whose [notifications] sends to the webhook."""

    def make(
        notifications: dict[str, Any] | None = None,
        environ: dict[str, str] | None = None,
        **config: Any,
    ) -> Runtime:
        section = {"urls": [webhook.url], **(notifications or {})}
        # The resource sampler's hourly sleep stays out of the way of the
        # notifier's retries on the shared fake clock.
        config.setdefault("resources", {"interval": "1h"})
        return Runtime(
            parse_config({**config, "notifications": section}),
            directory=tmp_path,
            environ=environ or {},
            clock=clock,
            persistent=False,
        )

    return make


def retry_due(clock: FakeClock) -> bool:
    """The notifier sleeps before a retry (the sampler's hourly sleep
    aside, which is also on this clock)."""
    deadline = clock.next_deadline
    return deadline is not None and deadline - clock.monotonic() < 60


@contextlib.asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[Notifier]:
    """Start *runtime*, yield its notifier, stop it again."""
    await runtime.start()
    try:
        assert runtime.notifier is not None
        yield runtime.notifier
    finally:
        await runtime.stop()


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait for real I/O (a loopback HTTP round trip) to have happened."""
    deadline = time.monotonic() + 10
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def delivered(notifier: Notifier, count: int) -> None:
    """Wait until *count* notifications were sent and none is pending."""
    await until(
        lambda: (
            notifier.snapshot().sent >= count
            and notifier.snapshot().pending == 0
        ),
        f"{count} notification(s) sent",
    )


def target_event(kind: EventKind, name: str, at: float = 0.0) -> Event:
    return Event(
        kind,
        at,
        "HealthCheck",
        f"{name} changed",
        target=name,
        data={"detail": "connection refused"},
    )


async def failing_heal() -> bool:
    return False


class TestConfig:
    def test_defaults(self) -> None:
        """Without a [notifications] section nothing is sent, with sane limits."""
        section = Config().notifications

        assert [] == section.urls
        assert section.targets is True
        assert 60.0 == section.min_interval
        assert 30 == section.max_per_hour
        assert 300.0 == section.retry_max

    def test_durations_and_urls_parse(self, webhook: Webhook) -> None:
        """Durations take the usual forms and a valid apprise URL passes."""
        section = parse_config(
            {
                "notifications": {
                    "urls": [webhook.url, "mailto://user:pw@example.com"],
                    "min_interval": "30s",
                    "retry_max": "2m",
                }
            }
        ).notifications

        assert 30.0 == section.min_interval
        assert 120.0 == section.retry_max
        assert 2 == len(section.urls)

    @pytest.mark.parametrize(
        ("url", "secrets", "shown"),
        [
            (
                "slack://TOKEN_A/TOKEN_B/TOKEN_C/#ops",
                ["TOKEN_A", "TOKEN_B", "TOKEN_C"],
                "slack://***",
            ),
            (
                "nosuch://admin:hunter2@example.com/hook",
                ["hunter2", "admin", "example.com"],
                "nosuch://***",
            ),
            ("xoxb-1234-5678-secret", ["xoxb-1234-5678-secret"], "scheme://"),
        ],
        ids=["bad-slack-tokens", "unknown-scheme", "no-scheme"],
    )
    def test_invalid_url_refused_without_secret(
        self,
        url: str,
        secrets: list[str],
        shown: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An URL apprise refuses is an error naming the field, never the secret."""
        caplog.set_level(logging.DEBUG)
        data = {"notifications": {"urls": ["json://127.0.0.1/ok", url]}}

        with pytest.raises(ConfigError) as info:
            parse_config(data)
        with pytest.raises(pydantic.ValidationError) as raw:
            Config.model_validate(data)

        message = str(info.value)
        assert "notifications.urls[1]" in message
        assert shown in message
        for secret in secrets:
            assert secret not in message
            assert secret not in str(raw.value)
            assert secret not in caplog.text  # apprise's own log lines too

    def test_unknown_key_refused(self) -> None:
        """A misspelt key in [notifications] is an error with its path."""
        with pytest.raises(ConfigError) as info:
            parse_config({"notifications": {"url": "json://x"}})

        assert "notifications.url: unknown key" in str(info.value)

    def test_no_notifier_without_urls(self, tmp_path: Path) -> None:
        """With no URL the runtime builds no notifier and says so in status."""
        runtime = Runtime(Config(), directory=tmp_path, persistent=False)

        assert runtime.notifier is None
        assert notifications_status(None) == runtime.status()["notifications"]
        assert runtime.status()["notifications"]["enabled"] is False


class TestHelpers:
    def test_all_is_sorted(self) -> None:
        """The public names are listed once, in order."""

        def isort_style(name: str) -> tuple[bool, bool, str]:
            # ruff's RUF022 order: CONSTANTS, then Classes, then functions.
            return (not name.isupper(), not name[0].isupper(), name)

        assert sorted(set(notify.__all__), key=isort_style) == notify.__all__

    @pytest.mark.parametrize(
        ("url", "masked"),
        [
            ("slack://T/B/X", "slack://***"),
            ("pagerduty://key@key", "pagerduty://***"),
            ("token-without-scheme", "***"),
        ],
    )
    def test_mask_url(self, url: str, masked: str) -> None:
        """Only the scheme of an URL is ever shown."""
        assert masked == mask_url(url)

    @pytest.mark.parametrize(
        ("host", "port", "url"),
        [
            ("127.0.0.1", 3001, "http://127.0.0.1:3001"),
            ("0.0.0.0", 8080, "http://localhost:8080"),  # noqa: S104
            ("::1", 3001, "http://[::1]:3001"),
            ("::", 3001, "http://localhost:3001"),
        ],
    )
    def test_base_url(self, host: str, port: int, url: str) -> None:
        """Commands name the address the daemon really listens on."""
        assert url == base_url(host, port)


class TestDormant:
    async def test_entering_dormant_sends_the_resume_command(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """Dormant mode delivers one failure with reason, status and commands."""
        runtime = make_runtime(
            engine={"max_consecutive_failures": 1},
            server={"port": 4321},
        )
        async with running(runtime) as notifier:
            await runtime.engine.attempt("web", failing_heal)
            await delivered(notifier, 1)

        assert 1 == len(webhook.received)
        payload = webhook.received[0].payload
        body = payload["message"]
        assert (
            "selfheal: CRITICAL — Self-Healing Engine in DORMANT mode"
            == payload["title"]
        )
        assert "failure" == payload["type"]
        assert "Reason: Exceeded maximum consecutive failures (1)" in body
        assert "Status: critical" in body
        assert "consecutiveFailures: 1" in body
        assert f"- {DORMANT_ISSUE}" in body
        assert (
            "curl -X POST http://127.0.0.1:4321/api/system/heal/resume "
            '-H "Content-Type: application/json" '
            '-d \'{"reason": "..."}\''
        ) in body
        assert (
            'selfheal resume --url http://127.0.0.1:4321 --reason "..."'
            in body
        )

    async def test_resuming_sends_who_and_why(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """Leaving dormant mode delivers a success naming actor and reason."""
        runtime = make_runtime()
        async with running(runtime) as notifier:
            runtime.engine.enter_dormant("disk full")
            runtime.engine.resume_from_dormant(
                "Valid API keys added", actor="alice"
            )
            await delivered(notifier, 2)

        payload = webhook.received[1].payload
        assert (
            "selfheal: RESOLVED — Self-Healing Engine resumed"
            == (payload["title"])
        )
        assert "success" == payload["type"]
        assert "Resumed by: alice" in payload["message"]
        assert "Reason: Valid API keys added" in payload["message"]
        assert "Was dormant because: disk full" in payload["message"]

    async def test_api_key_in_reason_is_masked(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """No API key leaves in a payload, even one pasted into a reason."""
        runtime = make_runtime()
        async with running(runtime) as notifier:
            runtime.engine.enter_dormant(f"key {KEY_A} was revoked")
            await delivered(notifier, 1)

        raw = webhook.received[0].raw.decode()
        assert KEY_A not in raw
        assert "a" * 40 not in raw
        assert (
            "Reason: key sk-ant-...1111 was revoked"
            in (webhook.received[0].payload["message"])
        )


class TestBreakersAndKeys:
    async def test_permanent_open_sends_the_reset_command(
        self,
        make_runtime: Callable[..., Runtime],
        webhook: Webhook,
        clock: FakeClock,
    ) -> None:
        """A breaker going PERMANENT_OPEN delivers its forced reset command."""
        runtime = make_runtime(
            breakers={
                "db": {
                    "failure_threshold": 1,
                    "recovery_timeout": "10s",
                    "permanent_after_trips": 1,
                }
            }
        )
        breaker = runtime.registry.get_or_create("db")
        async with running(runtime) as notifier:
            breaker.acquire().failure()  # OPEN: no notification
            clock.advance(10)
            breaker.acquire().failure()  # PERMANENT_OPEN
            await delivered(notifier, 1)

        assert 1 == len(webhook.received)
        payload = webhook.received[0].payload
        assert (
            "selfheal: CRITICAL — Circuit breaker db is PERMANENT_OPEN"
            == payload["title"]
        )
        assert "failure" == payload["type"]
        assert (
            'selfheal breakers reset db --force --reason "..."'
            in payload["message"]
        )

    async def test_all_keys_failed_is_level_three(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """The last key failing delivers the guide's level-3 emergency, once."""
        runtime = make_runtime(
            environ={"ANTHROPIC_API_KEYS": f"{KEY_A},{KEY_B}"}
        )
        first, second = (key.id for key in runtime.keys.snapshot().keys)
        async with running(runtime) as notifier:
            runtime.keys.report_failed(first, status=401, message="invalid")
            runtime.keys.report_failed(second, status=401, message="invalid")
            await delivered(notifier, 1)

        assert 1 == len(webhook.received)
        payload = webhook.received[0].payload
        body = payload["message"]
        assert "selfheal: CRITICAL — All API keys failed" == payload["title"]
        assert "failure" == payload["type"]
        assert "emergency level 3" in body
        assert 'echo "ANTHROPIC_API_KEY=sk-ant-..." >> .env.local' in body
        assert f"selfheal llm keys reset {second}" in body
        raw = webhook.received[0].raw.decode()
        assert KEY_A not in raw
        assert KEY_B not in raw

    async def test_a_key_back_is_announced(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """Resetting a key after all failed delivers a success."""
        runtime = make_runtime(environ={"ANTHROPIC_API_KEY": KEY_A})
        (key,) = runtime.keys.snapshot().keys
        async with running(runtime) as notifier:
            runtime.keys.report_failed(key.id, status=403, message="denied")
            runtime.keys.reset(key.id, actor="bob", reason="rotated")
            await delivered(notifier, 2)

        assert [
            "selfheal: CRITICAL — All API keys failed",
            "selfheal: RESOLVED — API keys available again",
        ] == webhook.titles
        assert "success" == webhook.received[1].payload["type"]


class TestTargets:
    async def test_sent_when_targets_on(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """A target going unhealthy and recovering delivers both."""
        runtime = make_runtime()
        async with running(runtime) as notifier:
            runtime.bus.publish(
                target_event(EventKind.TARGET_UNHEALTHY, "web")
            )
            runtime.bus.publish(
                target_event(EventKind.TARGET_RECOVERED, "web")
            )
            await delivered(notifier, 2)

        assert [
            "selfheal: WARNING — target web is unhealthy",
            "selfheal: RECOVERED — target web is healthy again",
        ] == webhook.titles
        assert ["warning", "success"] == [
            r.payload["type"] for r in webhook.received
        ]
        assert "connection refused" in webhook.received[0].payload["message"]

    async def test_not_sent_when_targets_off(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """With targets = false only the critical transitions are sent."""
        runtime = make_runtime(notifications={"targets": False})
        async with running(runtime) as notifier:
            runtime.bus.publish(
                target_event(EventKind.TARGET_UNHEALTHY, "web")
            )
            runtime.bus.publish(
                target_event(EventKind.TARGET_RECOVERED, "web")
            )
            runtime.engine.enter_dormant("disk full")
            await delivered(notifier, 1)

        assert [
            "selfheal: CRITICAL — Self-Healing Engine in DORMANT mode"
        ] == webhook.titles


class TestRetries:
    async def test_retried_with_backoff_and_reported_meanwhile(
        self,
        make_runtime: Callable[..., Runtime],
        webhook: Webhook,
        clock: FakeClock,
    ) -> None:
        """500s are retried after 1 s then 2 s; status warns until success."""
        webhook.statuses = [500, 500]
        runtime = make_runtime()
        async with running(runtime) as notifier:
            runtime.bus.publish(
                target_event(EventKind.TARGET_UNHEALTHY, "web")
            )
            await until(lambda: retry_due(clock), "first retry due")
            failing = runtime.status()
            clock.advance(1)
            await until(
                lambda: notifier.snapshot().failed == 2 and retry_due(clock),
                "second retry due",
            )
            clock.advance(2)
            await delivered(notifier, 1)
            healed = runtime.status()

        assert [0.0, 1.0, 3.0] == [r.at for r in webhook.received]
        assert [1.0, 2.0] == [s for s in clock.sleeps if 0 < s < 60]
        notifications = failing["notifications"]
        assert (1, 0, 1) == (
            notifications["failed"],
            notifications["sent"],
            notifications["pending"],
        )
        assert "warning" == failing["status"]
        issue = (
            "WARNING: Notifications failing: notifications.urls[0] (JSON): "
            "Failed to send JSON POST notification: Internal server error., "
            "error=500."
        )
        assert [issue] == failing["issues"]
        assert (
            issue
            == "WARNING: Notifications failing: "
            + (notifications["lastError"])
        )
        assert any("[notifications]" in r for r in failing["recommendations"])
        assert (2, 1, 0) == (
            healed["notifications"]["failed"],
            healed["notifications"]["sent"],
            healed["notifications"]["pending"],
        )
        assert [] == healed["issues"]
        assert "healthy" == healed["status"]

    async def test_stop_does_not_wait_out_a_backoff(
        self,
        webhook: Webhook,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Stopping while a send is failing returns at once and says so."""
        webhook.statuses = [500]
        notifier = Notifier([webhook.url], bus=EventBus(), clock=clock)
        await notifier.start()
        notifier._on_event(target_event(EventKind.TARGET_UNHEALTHY, "web"))
        await until(lambda: retry_due(clock), "retry due")

        started = time.monotonic()
        await notifier.stop()

        assert time.monotonic() - started < 1.0
        assert 1 == notifier.snapshot().pending
        assert "stopped with 1 notification(s) unsent" in caplog.text


class TestLimits:
    async def test_burst_within_min_interval_sends_one(
        self,
        make_runtime: Callable[..., Runtime],
        webhook: Webhook,
        clock: FakeClock,
    ) -> None:
        """Ten identical events within min_interval send 1 and suppress 9."""
        runtime = make_runtime()
        async with running(runtime) as notifier:
            for _ in range(10):
                runtime.bus.publish(
                    target_event(EventKind.TARGET_UNHEALTHY, "web")
                )
            await delivered(notifier, 1)
            burst = notifier.snapshot()
            clock.advance(60)
            runtime.bus.publish(
                target_event(EventKind.TARGET_UNHEALTHY, "web")
            )
            await delivered(notifier, 2)

        assert (1, 9) == (burst.sent, burst.suppressed)
        assert 2 == len(webhook.received)

    async def test_max_per_hour_is_a_global_cap(
        self,
        make_runtime: Callable[..., Runtime],
        webhook: Webhook,
        clock: FakeClock,
    ) -> None:
        """Beyond max_per_hour notifications are suppressed until the hour ends."""
        runtime = make_runtime(
            notifications={"max_per_hour": 2, "min_interval": 0}
        )
        async with running(runtime) as notifier:
            for name in ("a", "b", "c", "d"):
                runtime.bus.publish(
                    target_event(EventKind.TARGET_UNHEALTHY, name)
                )
            await delivered(notifier, 2)
            capped = notifier.snapshot()
            clock.advance(3600)
            runtime.bus.publish(target_event(EventKind.TARGET_UNHEALTHY, "e"))
            await delivered(notifier, 3)

        assert (2, 2) == (capped.sent, capped.suppressed)
        assert [
            f"selfheal: WARNING — target {name} is unhealthy"
            for name in ("a", "b", "e")
        ] == webhook.titles

    async def test_queue_is_bounded_oldest_dropped(
        self, webhook: Webhook, clock: FakeClock
    ) -> None:
        """A full queue drops its oldest notification and counts it."""
        webhook.hold = threading.Event()
        notifier = Notifier(
            [webhook.url], bus=EventBus(), clock=clock, queue_size=2
        )
        await notifier.start()
        try:
            notifier._on_event(target_event(EventKind.TARGET_UNHEALTHY, "a"))
            await until(lambda: len(webhook.received) == 1, "a in flight")
            for name in ("b", "c", "d"):
                notifier._on_event(
                    target_event(EventKind.TARGET_UNHEALTHY, name)
                )
            full = notifier.snapshot()
            webhook.hold.set()
            await delivered(notifier, 3)
        finally:
            await notifier.stop()

        assert (3, 1) == (full.pending, full.dropped)
        assert [
            f"selfheal: WARNING — target {name} is unhealthy"
            for name in ("a", "c", "d")
        ] == webhook.titles


class TestNonBlocking:
    async def test_slow_webhook_delays_neither_healing_nor_publishing(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """A webhook taking 2 s to answer delays no attempt and no publish."""
        webhook.hold = threading.Event()
        runtime = make_runtime(engine={"max_consecutive_failures": 1})
        async with running(runtime) as notifier:
            started = time.monotonic()
            runtime.bus.publish(
                target_event(EventKind.TARGET_UNHEALTHY, "web")
            )
            published = time.monotonic() - started
            await until(lambda: len(webhook.received) == 1, "a slow send")

            started = time.monotonic()
            result = await runtime.engine.attempt("web", failing_heal)
            attempted = time.monotonic() - started
            queued = notifier.snapshot().pending

            webhook.hold.set()
            await delivered(notifier, 2)

        assert published < 0.1
        assert attempted < 0.5
        assert result is not None
        assert runtime.engine.is_dormant
        assert 2 == queued  # the slow one in flight, the dormant one waiting

    async def test_publish_from_another_thread(
        self, make_runtime: Callable[..., Runtime], webhook: Webhook
    ) -> None:
        """An event published off the loop thread is delivered too."""
        runtime = make_runtime()
        async with running(runtime) as notifier:
            thread = threading.Thread(
                target=runtime.bus.publish,
                args=(target_event(EventKind.TARGET_UNHEALTHY, "web"),),
            )
            thread.start()
            thread.join(5)
            await delivered(notifier, 1)

        assert ["selfheal: WARNING — target web is unhealthy"] == (
            webhook.titles
        )

    async def test_status_document_shape(
        self, make_runtime: Callable[..., Runtime]
    ) -> None:
        """The status lists the notifier's counters under notifications."""
        runtime = make_runtime()

        document = runtime.status()["notifications"]

        assert {
            "enabled": True,
            "channels": 1,
            "sent": 0,
            "failed": 0,
            "pending": 0,
            "suppressed": 0,
            "dropped": 0,
            "failing": [],
            "lastError": None,
            "lastErrorAt": None,
            "lastSentAt": None,
        } == document


def test_notifications_config_is_exported() -> None:
    """The section's model is public like the other config sections."""
    assert isinstance(Config().notifications, NotificationsConfig)
