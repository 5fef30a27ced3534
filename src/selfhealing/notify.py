"""Notifications on critical transitions, sent through apprise.

The :class:`Notifier` subscribes to the event bus and tells people when
the system needs a human: the engine entering DORMANT mode (with the
guide's resume command), leaving it, a circuit breaker going
PERMANENT_OPEN, every API key failing (the guide's level-3 emergency) and,
when ``[notifications] targets = true``, a target going unhealthy and
recovering.

Sending never blocks healing: the bus callback only builds the text and
enqueues it. One asyncio task per configured URL sends with apprise,
retries a failed send with exponential backoff on the injected clock, and
keeps a bounded queue (the oldest notification is dropped, and counted).
Identical notifications (same kind and subject) within ``min_interval``
and any beyond ``max_per_hour`` are suppressed, and counted. URLs hold
tokens, so they are never logged, shown or echoed in an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import warnings

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from selfhealing._logging import mask_secrets
from selfhealing.backoff import Backoff
from selfhealing.breaker import BreakerState
from selfhealing.clock import Clock, utc_iso
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.llm.keypool import KeyManagement, KeyState
from selfhealing.redact import redact
from selfhealing.status import Finding, Health


if TYPE_CHECKING:
    from selfhealing.runtime import Runtime


__all__ = [
    "QUEUE_SIZE",
    "Notification",
    "NotificationKind",
    "Notifier",
    "NotifierSnapshot",
    "NotifyType",
    "base_url",
    "check_url",
    "mask_url",
    "notifications_status",
]

_log = logging.getLogger("selfhealing.notify")

QUEUE_SIZE = 100  # per URL; beyond it the oldest notification is dropped
RETRY_BASE = 1.0  # seconds before the first retry; doubles up to retry_max
STOP_GRACE = 2.0  # seconds stop() lets healthy channels deliver what is left
MAIN_BREAKER = "self-healing-main"  # the engine's breaker (engine.py)
TITLE_PREFIX = "selfheal: "
_CLI_DEFAULT_URL = "http://127.0.0.1:3001"  # `selfheal` without --url
_ERROR_LIMIT = 300  # characters of an error kept for status
_ISSUE_LIMIT = 10  # issues quoted in a dormant notification
_HOUR = 3600.0
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 (names)
_RESUME_PLACEHOLDER = "..."
_TARGET_EVENTS = frozenset(
    {EventKind.TARGET_UNHEALTHY, EventKind.TARGET_RECOVERED}
)


class NotifyType(StrEnum):
    """apprise's notification types (``apprise.NotifyType`` values)."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


class NotificationKind(StrEnum):
    """What a notification is about; with its subject, the rate-limit key."""

    DORMANT_ENTERED = "dormant_entered"
    DORMANT_EXITED = "dormant_exited"
    BREAKER_PERMANENT_OPEN = "breaker_permanent_open"
    KEYS_ALL_FAILED = "keys_all_failed"
    KEYS_RESTORED = "keys_restored"
    TARGET_UNHEALTHY = "target_unhealthy"
    TARGET_RECOVERED = "target_recovered"


@dataclass(frozen=True, slots=True)
class Notification:
    """One message, ready to send. *at* is wall time (epoch seconds)."""

    kind: NotificationKind
    subject: str
    type: NotifyType
    title: str
    body: str
    at: float


@dataclass(frozen=True, slots=True)
class NotifierSnapshot:
    """The notifier's counters, for ``notifications`` in the status."""

    enabled: bool = False
    channels: int = 0
    sent: int = 0
    failed: int = 0
    pending: int = 0
    suppressed: int = 0
    dropped: int = 0
    failing: tuple[str, ...] = ()
    last_error: str | None = None
    last_error_at: float | None = None
    last_sent_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The camelCase shape of the status API."""
        return {
            "enabled": self.enabled,
            "channels": self.channels,
            "sent": self.sent,
            "failed": self.failed,
            "pending": self.pending,
            "suppressed": self.suppressed,
            "dropped": self.dropped,
            "failing": list(self.failing),
            "lastError": self.last_error,
            "lastErrorAt": utc_iso(self.last_error_at),
            "lastSentAt": utc_iso(self.last_sent_at),
        }


def notifications_status(notifier: Notifier | None) -> dict[str, Any]:
    """``notifications`` in the status document, also when none is set."""
    if notifier is None:
        return NotifierSnapshot().to_dict()
    return notifier.snapshot().to_dict()


# ------------------------------------------------------------------ URLs


def _apprise() -> Any:
    """The apprise module, imported on first use (about 0.1 s)."""
    import apprise  # type: ignore[import-untyped, unused-ignore]  # noqa: PLC0415

    return apprise


_quiet_lock = threading.Lock()


@contextlib.contextmanager
def _quiet_apprise() -> Iterator[None]:
    """Parse URLs without apprise's own log lines and warnings.

    apprise logs a rejected URL's tokens (``An invalid Slack (first) Token
    (...)``), and its first parse imports plugins that raise
    DeprecationWarnings on Python 3.11.
    """
    logger = logging.getLogger("apprise")

    def drop(_record: logging.LogRecord) -> bool:
        return False

    with _quiet_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logger.addFilter(drop)
        try:
            yield
        finally:
            logger.removeFilter(drop)


def mask_url(url: str) -> str:
    """*url* safe to show: its scheme only, as ``slack://***``.

    Everything after the scheme may be a token (``slack://T/B/X``, the
    host of ``pagerduty://key@key``), so none of it is shown.
    """
    match = _SCHEME.match(url.strip())
    if match is None:
        return "***"
    return f"{match.group(1)}://***"


def check_url(url: str) -> str:
    """Return *url* if apprise accepts it; else raise ValueError.

    The error shows the scheme only (see :func:`mask_url`). Used by the
    config's ``notifications.urls`` validation, which adds the field path.
    """
    if _SCHEME.match(url.strip()) is None:
        raise ValueError(
            "expected an apprise URL such as json://host/path or "
            "slack://..., got a value without scheme:// (not shown: it "
            "may hold a secret)"
        )
    try:
        apprise = _apprise()
    except ImportError:
        raise ValueError(
            "notifications need the apprise package: pip install apprise"
        ) from None
    with _quiet_apprise():
        accepted = apprise.Apprise().add(url)
    if not accepted:
        raise ValueError(
            f"apprise does not accept {mask_url(url)}: unknown scheme, or "
            "a malformed or incomplete URL (the rest is not shown: it may "
            "hold secrets); see https://github.com/caronc/apprise/wiki"
        )
    return url


def base_url(host: str, port: int) -> str:
    """The daemon's address as an operator types it into curl."""
    host = host.strip()
    if host in _WILDCARDS:
        host = "localhost"  # listening everywhere: local is reachable
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _scrub(text: str) -> str:
    """Untrusted text (reasons, details) without secrets."""
    return redact(mask_secrets(text))


# ------------------------------------------------------------- channels

_Composer = Callable[["Notifier", Event], "Notification | None"]


@dataclass(eq=False, slots=True)
class _Channel:
    """One URL: its apprise object, queue, sender task and state."""

    label: str
    apprise: Any
    queue: deque[Notification]
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    inflight: Notification | None = None
    streak: int = 0  # failed attempts in a row
    last_error: str | None = None


@dataclass(slots=True)
class _Counters:
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    dropped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    last_sent_at: float | None = None


class Notifier:
    """Turn critical events into notifications; see the module docstring.

    *urls* are apprise URLs (validated by the config). *status* returns the
    status document (its summary goes into the dormant notification);
    *keys* the key pool's counts; *address* is the daemon's base URL for
    the commands quoted; *auth* says whether mutating calls need
    ``SELFHEAL_ADMIN_TOKEN``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        bus: EventBus,
        clock: Clock,
        targets: bool = True,
        min_interval: float = 60.0,
        max_per_hour: int = 30,
        retry_max: float = 300.0,
        status: Callable[[], Mapping[str, Any]] | None = None,
        keys: Callable[[], KeyManagement] | None = None,
        address: str = _CLI_DEFAULT_URL,
        auth: bool = False,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        if not urls:
            raise ValueError("a Notifier needs at least one URL")
        if queue_size < 1 or max_per_hour < 1 or min_interval < 0:
            raise ValueError(
                "need queue_size >= 1, max_per_hour >= 1, min_interval >= 0"
            )
        self._bus = bus
        self._clock = clock
        self.targets = targets
        self.min_interval = min_interval
        self.max_per_hour = max_per_hour
        self.backoff = Backoff.of(
            base=min(RETRY_BASE, retry_max), cap=retry_max
        )
        self._status = status
        self._keys = keys
        self.address = address
        self.auth = auth
        self._channels = tuple(
            self._channel(i, url, queue_size) for i, url in enumerate(urls)
        )
        self._lock = threading.Lock()
        self._counters = _Counters()
        self._last: dict[tuple[str, str], float] = {}  # monotonic
        self._window: deque[float] = deque()  # accepted in the last hour
        self._capped = False  # said once per hour that the cap hit
        self._keys_down = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closing = False

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> Notifier:
        """The notifier a runtime's ``[notifications]`` section asks for."""
        config = runtime.config.notifications
        server = runtime.config.server
        return cls(
            config.urls,
            bus=runtime.bus,
            clock=runtime.clock,
            targets=config.targets,
            min_interval=config.min_interval,
            max_per_hour=config.max_per_hour,
            retry_max=config.retry_max,
            status=runtime.status,
            keys=runtime.keys.snapshot,
            address=base_url(server.host, server.port),
            auth=runtime.admin_token is not None,
        )

    @staticmethod
    def _channel(index: int, url: str, queue_size: int) -> _Channel:
        apprise = _apprise()
        sender = apprise.Apprise()
        with _quiet_apprise():
            if not sender.add(url):
                raise ValueError(
                    f"notifications.urls[{index}]: apprise does not accept "
                    f"{mask_url(url)}"
                )
        name = getattr(sender[0], "service_name", None) or mask_url(url)
        return _Channel(
            label=f"notifications.urls[{index}] ({name})",
            apprise=sender,
            queue=deque(maxlen=queue_size),
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Subscribe to the bus and start one sender task per URL."""
        if self._unsubscribe is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._closing = False
        for channel in self._channels:
            # Bound to this loop: made here, not in __init__.
            channel.wakeup = asyncio.Event()
            if channel.queue:
                channel.wakeup.set()
            channel.task = asyncio.create_task(
                self._run(channel), name=f"notify:{channel.label}"
            )
        self._unsubscribe = self._bus.subscribe(self._on_event)
        _log.info(
            "sending notifications to %d URL(s): %s",
            len(self._channels),
            ", ".join(c.label for c in self._channels),
        )

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Unsubscribe, let healthy channels deliver for up to *grace*
        seconds, then cancel; what is left unsent is logged."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._closing = True
        tasks: list[asyncio.Task[None]] = []
        for channel in self._channels:
            task, channel.task = channel.task, None
            if task is None:
                continue
            tasks.append(task)
            channel.wakeup.set()
            if channel.streak:
                task.cancel()  # it would only wait out its backoff
        if tasks:
            # A send is network I/O: bounded in real time, not the clock.
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        unsent = self.snapshot().pending
        if unsent:
            _log.warning(
                "stopped with %d notification(s) unsent (%s)",
                unsent,
                self.snapshot().last_error or "shutting down",
            )
        self._loop = None

    # ------------------------------------------------------------- reading

    def snapshot(self) -> NotifierSnapshot:
        """Counters now; ``failing`` names channels whose last try failed."""
        with self._lock:
            counters = self._counters
            pending = sum(
                len(c.queue) + (c.inflight is not None) for c in self._channels
            )
            failing = tuple(c.label for c in self._channels if c.streak)
            return NotifierSnapshot(
                enabled=True,
                channels=len(self._channels),
                sent=counters.sent,
                failed=counters.failed,
                pending=pending,
                suppressed=counters.suppressed,
                dropped=counters.dropped,
                failing=failing,
                last_error=counters.last_error,
                last_error_at=counters.last_error_at,
                last_sent_at=counters.last_sent_at,
            )

    def findings(self) -> list[Finding]:
        """A WARNING while the last send attempt of some URL failed."""
        with self._lock:
            errors = [c.last_error for c in self._channels if c.streak]
        return [
            Finding(
                Health.WARNING,
                f"WARNING: Notifications failing: {error}",
                "Check the URLs in [notifications] of selfheal.toml and "
                "that their service is reachable; failed notifications "
                "are retried with backoff",
            )
            for error in errors
        ]

    # ---------------------------------------------------------- enqueueing

    def _on_event(self, event: Event) -> None:
        """Bus callback: build the notification and enqueue it, no I/O."""
        notification = self._compose(event)
        if notification is not None:
            self.offer(notification)

    def offer(self, notification: Notification) -> bool:
        """Queue *notification* for every URL unless rate limits say no.

        Thread-safe; returns whether it was queued.
        """
        now = self._clock.monotonic()
        key = (str(notification.kind), notification.subject)
        with self._lock:
            verdict = self._admit_locked(key, now)
            dropped = 0
            if verdict is None:
                dropped = self._enqueue_locked(notification)
        what = f"{notification.kind}/{notification.subject}"
        if verdict is not None:
            log, why = verdict
            log("notification %s suppressed: %s", what, why)
            return False
        if dropped:
            _log.warning(
                "notification queue full: dropped the %d oldest", dropped
            )
        self._wake()
        return True

    def _admit_locked(
        self, key: tuple[str, str], now: float
    ) -> tuple[Callable[..., None], str] | None:
        """None to send, else how to log the suppression and why."""
        last = self._last.get(key)
        if last is not None and now - last < self.min_interval:
            self._counters.suppressed += 1
            return _log.debug, (
                f"the same one was queued {now - last:g}s ago "
                f"(min_interval {self.min_interval:g}s)"
            )
        while self._window and now - self._window[0] >= _HOUR:
            self._window.popleft()
        if len(self._window) >= self.max_per_hour:
            self._counters.suppressed += 1
            # Warn once per capped stretch; the count is in the status.
            first, self._capped = not self._capped, True
            return (_log.warning if first else _log.debug), (
                f"{self.max_per_hour} already sent within the hour "
                "(max_per_hour)"
            )
        self._capped = False
        self._window.append(now)
        self._last[key] = now
        self._forget_old(now)
        return None

    def _enqueue_locked(self, notification: Notification) -> int:
        dropped = 0
        for channel in self._channels:
            if len(channel.queue) == channel.queue.maxlen:
                dropped += 1  # append() below drops the oldest
            channel.queue.append(notification)
        self._counters.dropped += dropped
        return dropped

    def _forget_old(self, now: float) -> None:
        """Keep the duplicate filter small: old keys cannot match."""
        if len(self._last) > 4 * QUEUE_SIZE:
            self._last = {
                key: at
                for key, at in self._last.items()
                if now - at < self.min_interval
            }

    def _wake(self) -> None:
        loop = self._loop
        if loop is None:
            return  # not started: start() wakes channels that have work
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for channel in self._channels:
            if running is loop:
                channel.wakeup.set()
            else:
                # asyncio.Event is not thread-safe: set it on its loop.
                with contextlib.suppress(RuntimeError):  # loop closed
                    loop.call_soon_threadsafe(channel.wakeup.set)

    # ------------------------------------------------------------- sending

    async def _run(self, channel: _Channel) -> None:
        """Send *channel*'s queue in order, retrying the head on failure."""
        while True:
            with self._lock:
                item = channel.inflight
                if item is None and channel.queue:
                    item = channel.inflight = channel.queue.popleft()
            if item is None:
                if self._closing:
                    return
                channel.wakeup.clear()
                with self._lock:
                    idle = not channel.queue
                if idle:
                    await channel.wakeup.wait()
                continue
            if await self._send(channel, item):
                continue
            delay = self.backoff.delay(channel.streak - 1)
            _log.info("retrying %s in %gs", channel.label, delay)
            await self._clock.sleep(delay)

    async def _send(self, channel: _Channel, item: Notification) -> bool:
        apprise = _apprise()
        error: str | None = None
        try:
            result = await channel.apprise.async_notify(
                body=item.body,
                title=item.title,
                notify_type=apprise.NotifyType(str(item.type)),
            )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            try:
                if not result:
                    error = _failure_text(result)
            finally:
                with contextlib.suppress(Exception):
                    result.close()
        wall = self._clock.time()
        with self._lock:
            counters = self._counters
            if error is None:
                channel.inflight = None
                channel.streak = 0
                channel.last_error = None
                counters.sent += 1
                counters.last_sent_at = wall
            else:
                error = f"{channel.label}: {_scrub(error)}"
                if len(error) > _ERROR_LIMIT:
                    error = error[: _ERROR_LIMIT - 3] + "..."
                channel.streak += 1
                channel.last_error = error
                counters.failed += 1
                counters.last_error = error
                counters.last_error_at = wall
            streak = channel.streak
        if error is None:
            _log.info("sent %s/%s", item.kind, item.subject)
            return True
        _log.warning(
            "notification %s/%s not delivered (attempt %d): %s",
            item.kind,
            item.subject,
            streak,
            error,
        )
        return False

    # ----------------------------------------------------------- composing

    def _compose(self, event: Event) -> Notification | None:
        compose = self._composers.get(event.kind)
        if compose is None:
            return None
        if event.kind in _TARGET_EVENTS and not self.targets:
            return None
        return compose(self, event)

    def _make(
        self,
        kind: NotificationKind,
        *,
        subject: str,
        type_: NotifyType,
        title: str,
        lines: Sequence[str],
        at: float,
    ) -> Notification:
        # The last guard: nothing that looks like an API key leaves.
        return Notification(
            kind,
            subject,
            type_,
            mask_secrets(TITLE_PREFIX + title),
            mask_secrets("\n".join(lines).strip()),
            at,
        )

    def _curl(self, path: str, payload: str) -> str:
        auth = (
            ' -H "Authorization: Bearer $SELFHEAL_ADMIN_TOKEN"'
            if self.auth
            else ""
        )
        return (
            f"curl -X POST {self.address}{path}{auth} "
            f"-H \"Content-Type: application/json\" -d '{payload}'"
        )

    def _cli(self, command: str) -> str:
        url = (
            ""
            if self.address == _CLI_DEFAULT_URL
            else f" --url {self.address}"
        )
        return f"selfheal {command}{url}"

    def _status_lines(self) -> list[str]:
        if self._status is None:
            return []
        try:
            document = self._status()
        except Exception as exc:
            return [f"Status: unavailable ({type(exc).__name__}: {exc})"]
        engine = document.get("selfHealing") or {}
        issues = list(document.get("issues") or [])
        lines = [
            f"Status: {document.get('status')}",
            f"consecutiveFailures: {engine.get('consecutiveFailures')}",
            "Issues:" if issues else "Issues: none",
        ]
        lines += [f"- {issue}" for issue in issues[:_ISSUE_LIMIT]]
        if len(issues) > _ISSUE_LIMIT:
            lines.append(f"- ... and {len(issues) - _ISSUE_LIMIT} more")
        return lines

    def _dormant_entered(self, event: Event) -> Notification:
        reason = _scrub(event.reason or "unknown")
        lines = [
            (
                "The Self-Healing Engine entered DORMANT mode: no healing "
                "attempt for any target until an operator resumes it."
            ),
            "",
            f"Reason: {reason}",
            f"Since: {utc_iso(event.at)}",
        ]
        if event.actor:
            lines.append(f"By: {_scrub(event.actor)}")
        lines += ["", *self._status_lines(), ""]
        payload = f'{{"reason": "{_RESUME_PLACEHOLDER}"}}'
        lines += [
            (
                f"Fix the root cause first (curl {self.address}/api/status"
                " | jq '{issues, recommendations}'), then resume:"
            ),
            f"  {self._curl('/api/system/heal/resume', payload)}",
            "or:",
            f'  {self._cli("resume")} --reason "{_RESUME_PLACEHOLDER}"',
        ]
        return self._make(
            NotificationKind.DORMANT_ENTERED,
            subject="engine",
            type_=NotifyType.FAILURE,
            title="CRITICAL — Self-Healing Engine in DORMANT mode",
            lines=lines,
            at=event.at,
        )

    def _dormant_exited(self, event: Event) -> Notification:
        actor = _scrub(event.actor or "unknown")
        reason = _scrub(event.reason or "no reason given")
        previous = event.data.get("previousReason")
        lines = [
            (
                "The Self-Healing Engine left DORMANT mode: healing is "
                f"active again (resumed by {actor})."
            ),
            "",
            f"Resumed by: {actor}",
            f"Reason: {reason}",
            f"At: {utc_iso(event.at)}",
        ]
        if previous:
            lines.append(f"Was dormant because: {_scrub(str(previous))}")
        lines += [
            "",
            f"Watch it for the next 30 minutes: {self._cli('watch')}",
        ]
        return self._make(
            NotificationKind.DORMANT_EXITED,
            subject="engine",
            type_=NotifyType.SUCCESS,
            title="RESOLVED — Self-Healing Engine resumed",
            lines=lines,
            at=event.at,
        )

    def _breaker_transition(self, event: Event) -> Notification | None:
        if event.data.get("to") != str(BreakerState.PERMANENT_OPEN):
            return None
        return self._permanent_open(event)

    def _permanent_open(self, event: Event) -> Notification:
        name = str(event.data.get("breaker") or "unknown")
        reason = _scrub(event.reason or "unknown")
        lines = [
            (
                f"Circuit breaker {name} went PERMANENT_OPEN: it rejects "
                "every call until an operator resets it."
            ),
            "",
            f"Reason: {reason}",
            f"Trips: {event.data.get('tripCount')}",
            f"At: {utc_iso(event.at)}",
            "",
            "Fix the root cause first, then force a reset:",
            (
                f"  {self._cli(f'breakers reset {name}')} --force "
                f'--reason "{_RESUME_PLACEHOLDER}"'
            ),
        ]
        if name == MAIN_BREAKER:
            lines += [
                "The engine is DORMANT while it is: resuming resets it too:",
                f'  {self._cli("resume")} --reason "{_RESUME_PLACEHOLDER}"',
            ]
        return self._make(
            NotificationKind.BREAKER_PERMANENT_OPEN,
            subject=name,
            type_=NotifyType.FAILURE,
            title=f"CRITICAL — Circuit breaker {name} is PERMANENT_OPEN",
            lines=lines,
            at=event.at,
        )

    def _key_state(self, event: Event) -> Notification | None:
        if self._keys is None:
            return None
        pool = self._keys()
        down = pool.total > 0 and pool.active == 0
        with self._lock:
            changed = down != self._keys_down
            self._keys_down = down
        if not changed:
            return None
        return (
            self._keys_failed(event, pool)
            if down
            else self._keys_restored(event, pool)
        )

    def _keys_failed(self, event: Event, pool: KeyManagement) -> Notification:
        failed = [k.id for k in pool.keys if k.state is KeyState.FAILED]
        lines = [
            (
                f"All {pool.total} API key(s) are unusable ({pool.failed} "
                f"failed, {pool.rate_limited} rate limited): the LLM "
                "advisor cannot run (emergency level 3 of the ops guide)."
            ),
            "",
            f"Last change: {_scrub(event.message)}",
        ]
        if event.reason:
            lines.append(f"Why: {_scrub(event.reason)}")
        lines += [
            "",
            "Add a valid key and restart the daemon:",
            '  echo "ANTHROPIC_API_KEY=sk-ant-..." >> .env.local',
        ]
        if failed:
            lines += ["or, once a key is valid again, reset it:"]
            lines += [
                f"  {self._cli(f'llm keys reset {key}')} --reason "
                f'"{_RESUME_PLACEHOLDER}"'
                for key in failed
            ]
        lines += [
            "Then check (1 or more):",
            (
                f"  curl {self.address}/api/status | jq "
                "'.llm.keyManagement.activeKeys'"
            ),
        ]
        return self._make(
            NotificationKind.KEYS_ALL_FAILED,
            subject="keys",
            type_=NotifyType.FAILURE,
            title="CRITICAL — All API keys failed",
            lines=lines,
            at=event.at,
        )

    def _keys_restored(
        self, event: Event, pool: KeyManagement
    ) -> Notification:
        lines = [
            (
                f"{pool.active} of {pool.total} API key(s) active again: "
                "the LLM advisor can run."
            ),
            "",
            f"Last change: {_scrub(event.message)}",
        ]
        return self._make(
            NotificationKind.KEYS_RESTORED,
            subject="keys",
            type_=NotifyType.SUCCESS,
            title="RESOLVED — API keys available again",
            lines=lines,
            at=event.at,
        )

    def _target_unhealthy(self, event: Event) -> Notification:
        name = event.target or "unknown"
        detail = _scrub(str(event.data.get("detail") or event.message))
        lines = [
            f"Target {name} is unhealthy: {detail}",
            f"At: {utc_iso(event.at)}",
            "",
            "Healing runs by itself; watch it:",
            f"  curl '{self.address}/api/events?target={name}'",
        ]
        return self._make(
            NotificationKind.TARGET_UNHEALTHY,
            subject=name,
            type_=NotifyType.WARNING,
            title=f"WARNING — target {name} is unhealthy",
            lines=lines,
            at=event.at,
        )

    def _target_recovered(self, event: Event) -> Notification:
        name = event.target or "unknown"
        lines = [
            f"Target {name} is healthy again.",
            f"At: {utc_iso(event.at)}",
        ]
        return self._make(
            NotificationKind.TARGET_RECOVERED,
            subject=name,
            type_=NotifyType.SUCCESS,
            title=f"RECOVERED — target {name} is healthy again",
            lines=lines,
            at=event.at,
        )

    _composers: ClassVar[Mapping[EventKind, _Composer]] = {
        EventKind.DORMANT_ENTERED: _dormant_entered,
        EventKind.DORMANT_EXITED: _dormant_exited,
        EventKind.BREAKER_TRANSITION: _breaker_transition,
        EventKind.KEY_STATE: _key_state,
        EventKind.TARGET_UNHEALTHY: _target_unhealthy,
        EventKind.TARGET_RECOVERED: _target_recovered,
    }


def _failure_text(result: Any) -> str:
    """Why apprise could not deliver, from the entries it captured."""
    messages = [
        entry.message
        for entry in result.logs()
        if entry.level in {"WARNING", "ERROR", "CRITICAL"}
    ]
    if messages:
        return "; ".join(dict.fromkeys(messages))
    status = getattr(result, "status", None)
    return f"not delivered ({getattr(status, 'name', status)})"
