"""The circuit breaker: CLOSED, OPEN, HALF_OPEN and PERMANENT_OPEN.

* CLOSED calls run. ``failure_threshold`` consecutive failures trip it OPEN.
* OPEN rejects calls fast until ``recovery_timeout`` has passed, then it is
  HALF_OPEN: exactly ``half_open_max_calls`` concurrent trial calls run and
  the rest are rejected. A trial success closes it; a failure trips it again.
* Every transition into OPEN is a trip. After ``permanent_after_trips`` trips
  within ``permanent_window`` the next trip lands in PERMANENT_OPEN instead,
  which only ``reset(force=True)`` leaves.

The closed, successful path takes no lock and touches no store: it reads one
attribute before and one after the guarded call. Everything else (counted
failures, admissions, transitions) happens under a lock that is never held
while the guarded function runs. Transitions are written through to a
BreakerStateStore, then reported to listeners and the event bus, outside the
lock.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import math
import threading

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar, overload

from selfhealing.breaker_store import (
    BreakerRecord,
    BreakerStateStore,
)
from selfhealing.clock import Clock, seconds, system_clock, utc_iso
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    BreakerResetRefusedError,
    CircuitOpenError,
    ConfigError,
)


__all__ = [
    "PERMANENT_OPEN_REASON",
    "BreakerSettings",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
    "TransitionListener",
]

_log = logging.getLogger("selfhealing.breaker")

P = ParamSpec("P")
R = TypeVar("R")

PERMANENT_OPEN_REASON = "Exceeded permanent failure threshold"


class BreakerState(StrEnum):
    """The four states, spelled as the guide's status output shows them."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"
    PERMANENT_OPEN = "PERMANENT_OPEN"


_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN
_PERMANENT_OPEN = BreakerState.PERMANENT_OPEN

TransitionListener = Callable[
    ["CircuitBreaker", BreakerState, BreakerState], object
]


def _count(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer, got {value!r}", where=name)
    if value < minimum:
        raise ConfigError(f"must be >= {minimum}, got {value}", where=name)
    return value


def _duration(value: float | timedelta, name: str, *, positive: bool) -> float:
    result = seconds(value, name=name)
    if not math.isfinite(result):
        raise ConfigError(
            f"must be a finite duration, got {value!r}", where=name
        )
    if result < 0 or (positive and result == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(
            f"must be {bound} seconds, got {value!r}", where=name
        )
    return result


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """Per-breaker policy. Validated once, shared by breakers alike.

    ``permanent_after_trips = 0`` disables the permanent state.
    """

    failure_threshold: int = 5
    recovery_timeout: float = 60.0
    half_open_max_calls: int = 1
    permanent_after_trips: int = 3
    permanent_window: float = 1800.0
    excluded: tuple[type[BaseException], ...] = ()

    @classmethod
    def of(
        cls,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float | timedelta = 60.0,
        half_open_max_calls: int = 1,
        permanent_after_trips: int = 3,
        permanent_window: float | timedelta = 1800.0,
        excluded: Iterable[type[BaseException]] = (),
    ) -> BreakerSettings:
        """Validate raw settings (seconds or timedeltas) into a policy.

        Equal policies are interned, so a thousand default breakers share
        one settings object.
        """
        excluded = tuple(excluded)
        for exc_type in excluded:
            if not (
                isinstance(exc_type, type)
                and issubclass(exc_type, BaseException)
            ):
                raise ConfigError(
                    f"expected exception classes, got {exc_type!r}",
                    where="excluded",
                )
        policy = cls(
            failure_threshold=_count(
                failure_threshold, "failure_threshold", minimum=1
            ),
            recovery_timeout=_duration(
                recovery_timeout, "recovery_timeout", positive=False
            ),
            half_open_max_calls=_count(
                half_open_max_calls, "half_open_max_calls", minimum=1
            ),
            permanent_after_trips=_count(
                permanent_after_trips, "permanent_after_trips", minimum=0
            ),
            permanent_window=_duration(
                permanent_window, "permanent_window", positive=True
            ),
            excluded=excluded,
        )
        return _interned.setdefault(policy, policy)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failureThreshold": self.failure_threshold,
            "recoveryTimeout": self.recovery_timeout,
            "halfOpenMaxCalls": self.half_open_max_calls,
            "permanentAfterTrips": self.permanent_after_trips,
            "permanentWindow": self.permanent_window,
        }


DEFAULT_SETTINGS = BreakerSettings()
_interned: dict[BreakerSettings, BreakerSettings] = {
    DEFAULT_SETTINGS: DEFAULT_SETTINGS
}


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker at one moment; times are wall-clock epochs."""

    name: str
    state: BreakerState
    failure_count: int
    trip_count: int
    opened_at: float | None
    next_attempt_at: float | None
    permanent_open_reason: str | None
    half_open_in_flight: int
    settings: BreakerSettings

    def to_dict(self) -> dict[str, Any]:
        """The status API's shape (camelCase)."""
        return {
            "name": self.name,
            "state": str(self.state),
            "failureCount": self.failure_count,
            "tripCount": self.trip_count,
            "openedAt": utc_iso(self.opened_at),
            "nextAttemptAt": utc_iso(self.next_attempt_at),
            "permanentOpenReason": self.permanent_open_reason,
            "halfOpenInFlight": self.half_open_in_flight,
            "settings": self.settings.to_dict(),
        }


# A ticket says how a call was admitted: as a closed-state call, or as the
# trial of one HALF_OPEN period (identified by the breaker's generation).
_CLOSED_TICKET = -1
_guard_tickets: contextvars.ContextVar[tuple[int, ...]] = (
    contextvars.ContextVar("selfhealing_breaker_tickets", default=())
)


class Permit:
    """One admitted call of :meth:`CircuitBreaker.acquire`, to be settled."""

    __slots__ = ("_breaker", "_settled", "_ticket")

    def __init__(self, breaker: CircuitBreaker, ticket: int) -> None:
        self._breaker = breaker
        self._ticket = ticket
        self._settled = False

    def success(self) -> None:
        self._settle(None)

    def failure(self, exc: BaseException | None = None) -> None:
        self._settle(exc if exc is not None else _Failure())

    def cancel(self) -> None:
        """Give up the call with no verdict (frees a half-open slot)."""
        self._settle(_NoVerdict())

    def _settle(self, exc: BaseException | None) -> None:
        if self._settled:
            return
        self._settled = True
        breaker = self._breaker
        if self._ticket != _CLOSED_TICKET:
            breaker._trial_done(self._ticket, exc)  # noqa: SLF001
        elif isinstance(exc, Exception):
            breaker._closed_failure(exc)  # noqa: SLF001
        elif exc is None and breaker.failure_count:
            breaker._closed_success()  # noqa: SLF001


class _Failure(Exception):  # noqa: N818 (a marker, not raised)
    """A failure reported through a Permit without an exception."""


class _NoVerdict(BaseException):
    """Marks a cancelled Permit: like a cancellation, it counts as nothing."""


class CircuitBreaker:
    """A named circuit breaker; see the module docstring for the rules."""

    __slots__ = (
        "_bus",
        "_clock",
        "_failure_count",
        "_generation",
        "_in_flight",
        "_listeners",
        "_lock",
        "_open_until",
        "_opened_at_wall",
        "_permanent_reason",
        "_settings",
        "_state",
        "_store",
        "_trip_count",
        "_trips",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float | timedelta = 60.0,
        half_open_max_calls: int = 1,
        permanent_after_trips: int = 3,
        permanent_window: float | timedelta = 1800.0,
        excluded: Iterable[type[BaseException]] = (),
        settings: BreakerSettings | None = None,
        clock: Clock = system_clock,
        store: BreakerStateStore | None = None,
        bus: EventBus | None = None,
        listeners: Iterable[TransitionListener] = (),
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(
                f"a breaker needs a non-empty name, got {name!r}", where="name"
            )
        if settings is None:
            settings = BreakerSettings.of(
                failure_threshold=failure_threshold,
                recovery_timeout=recovery_timeout,
                half_open_max_calls=half_open_max_calls,
                permanent_after_trips=permanent_after_trips,
                permanent_window=permanent_window,
                excluded=excluded,
            )
        self.name = name
        self._settings = settings
        self._clock = clock
        self._store = store
        self._bus = bus
        self._listeners: tuple[TransitionListener, ...] = tuple(listeners)
        self._lock = threading.Lock()
        self._state = _CLOSED
        self._failure_count = 0
        self._trip_count = 0
        self._trips: tuple[float, ...] = ()
        self._open_until = 0.0
        self._opened_at_wall: float | None = None
        self._permanent_reason: str | None = None
        self._in_flight = 0
        self._generation = 0
        if store is not None:
            record = store.load(name)
            if record is not None:
                self._restore(record)

    # ---------------------------------------------------------------- calls

    def call(
        self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``fn(*args, **kwargs)`` through the breaker."""
        state = self._state
        if state is not _CLOSED:
            # Reject an OPEN breaker right here: every frame an exception
            # unwinds through costs time, and rejection is a hot path too.
            if state is _PERMANENT_OPEN:
                raise CircuitOpenError(self.name, state, None)
            if state is _OPEN:
                remaining = self._open_until - self._clock.monotonic()
                if remaining > 0:
                    raise CircuitOpenError(self.name, state, remaining)
            return self._call_guarded(fn, args, kwargs)
        try:
            # Spreading an empty **kwargs costs ~15 ns, a sixth of this path
            # (mypy cannot see that kwargs is empty in the second call).
            result = fn(*args, **kwargs) if kwargs else fn(*args)  # type: ignore[call-arg]
        except Exception as exc:
            self._closed_failure(exc)
            raise
        if self._failure_count:
            self._closed_success()
        return result

    async def call_async(
        self,
        fn: Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker."""
        if self._state is not _CLOSED:
            ticket = self._admit()
            if ticket != _CLOSED_TICKET:
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    self._trial_done(ticket, exc)
                    raise
                self._trial_done(ticket, None)
                return result
        try:
            result = await (
                fn(*args, **kwargs) if kwargs else fn(*args)  # type: ignore[call-arg]
            )
        except Exception as exc:
            self._closed_failure(exc)
            raise
        if self._failure_count:
            self._closed_success()
        return result

    def _call_guarded(
        self,
        fn: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        ticket = self._admit()
        if ticket == _CLOSED_TICKET:
            return self.call(fn, *args, **kwargs)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._trial_done(ticket, exc)
            raise
        self._trial_done(ticket, None)
        return result

    @overload
    def __call__(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Use the breaker as a decorator, on sync or async functions."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call_async(fn, *args, **kwargs)

            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call(fn, *args, **kwargs)

        return guarded

    def acquire(self) -> Permit:
        """Ask for permission to make one call, and report it yourself.

        Raises CircuitOpenError when the call is not admitted. The returned
        Permit must end with exactly one of ``success()``, ``failure()`` or
        ``cancel()`` (no verdict, e.g. when a second breaker refused). This
        is how one operation goes through several breakers at once without
        one counting another's rejection.
        """
        ticket = _CLOSED_TICKET if self._state is _CLOSED else self._admit()
        return Permit(self, ticket)

    # The context-manager forms keep each entry's ticket in a context
    # variable, so one breaker guards blocks in many threads and tasks.

    def __enter__(self) -> Self:
        ticket = _CLOSED_TICKET if self._state is _CLOSED else self._admit()
        _guard_tickets.set((*_guard_tickets.get(), ticket))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tickets = _guard_tickets.get()
        _guard_tickets.set(tickets[:-1])
        ticket = tickets[-1]
        if ticket != _CLOSED_TICKET:
            self._trial_done(ticket, exc)
        elif isinstance(exc, Exception):
            self._closed_failure(exc)
        elif exc is None and self._failure_count:
            self._closed_success()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # ------------------------------------------------------- the slow paths

    def _admit(self) -> int:
        """Admit a call outside CLOSED, or raise CircuitOpenError."""
        state = self._state
        if state is _PERMANENT_OPEN:
            raise CircuitOpenError(self.name, state, None)
        if state is _OPEN:
            remaining = self._open_until - self._clock.monotonic()
            if remaining > 0:
                raise CircuitOpenError(self.name, state, remaining)
        transition = None
        with self._lock:
            transition = self._refresh_locked()
            state = self._state
            if state is _CLOSED:
                ticket = _CLOSED_TICKET
            elif (
                state is _HALF_OPEN
                and self._in_flight < self._settings.half_open_max_calls
            ):
                self._in_flight += 1
                ticket = self._generation
            else:
                ticket = None
        if transition is not None:
            self._announce(*transition)
        if ticket is None:
            if state is _PERMANENT_OPEN:
                raise CircuitOpenError(self.name, state, None)
            retry = max(0.0, self._open_until - self._clock.monotonic())
            raise CircuitOpenError(self.name, state, retry)
        return ticket

    def _closed_failure(self, exc: Exception) -> None:
        if isinstance(exc, self._settings.excluded):
            if self._failure_count:
                self._closed_success()
            return
        with self._lock:
            if self._state is not _CLOSED:
                # The breaker tripped while this call ran: counted already.
                return
            self._failure_count += 1
            transition = None
            if self._failure_count >= self._settings.failure_threshold:
                transition = self._trip_locked()
            record = self._record_locked()
        self._save(record)
        if transition is not None:
            self._announce(*transition)

    def _closed_success(self) -> None:
        with self._lock:
            if self._state is not _CLOSED or not self._failure_count:
                return
            self._failure_count = 0
            record = self._record_locked()
        self._save(record)

    def _trial_done(self, ticket: int, exc: BaseException | None) -> None:
        with self._lock:
            if ticket != self._generation or self._state is not _HALF_OPEN:
                return  # a reset or another trial settled this period
            self._in_flight -= 1
            if exc is None or isinstance(exc, self._settings.excluded):
                transition = self._move_locked(_CLOSED)
                self._failure_count = 0
            elif isinstance(exc, Exception):
                self._failure_count += 1
                transition = self._trip_locked()
            else:
                return  # cancelled or interrupted: no verdict, slot freed
            record = self._record_locked()
        self._save(record)
        self._announce(*transition)

    def _refresh_locked(self) -> tuple[BreakerState, BreakerState] | None:
        if (
            self._state is _OPEN
            and self._clock.monotonic() >= self._open_until
        ):
            self._in_flight = 0
            return self._move_locked(_HALF_OPEN)
        return None

    def _trip_locked(self) -> tuple[BreakerState, BreakerState]:
        now = self._clock.monotonic()
        settings = self._settings
        window_start = now - settings.permanent_window
        recent = tuple(t for t in self._trips if t > window_start)
        self._trips = (*recent, now)
        self._trip_count += 1
        self._opened_at_wall = self._clock.time()
        if (
            settings.permanent_after_trips
            and len(recent) >= settings.permanent_after_trips
        ):
            self._permanent_reason = PERMANENT_OPEN_REASON
            return self._move_locked(_PERMANENT_OPEN)
        self._open_until = now + settings.recovery_timeout
        return self._move_locked(_OPEN)

    def _move_locked(
        self, new: BreakerState
    ) -> tuple[BreakerState, BreakerState]:
        old = self._state
        self._state = new
        self._generation += 1
        return old, new

    # ------------------------------------------------------------ operators

    @property
    def state(self) -> BreakerState:
        """The current state (an OPEN breaker past its timeout is HALF_OPEN)."""
        if self._state is _OPEN:
            with self._lock:
                transition = self._refresh_locked()
            if transition is not None:
                self._announce(*transition)
        return self._state

    def get_state(self) -> BreakerState:
        """The guide's ``breaker.getState()``."""
        return self.state

    @property
    def settings(self) -> BreakerSettings:
        return self._settings

    @property
    def failure_count(self) -> int:
        return self._failure_count

    @property
    def trip_count(self) -> int:
        return self._trip_count

    @property
    def permanent_open_reason(self) -> str | None:
        return self._permanent_reason

    def retry_after(self) -> float | None:
        """Seconds until calls may be admitted: 0 when they are now, None
        when only an operator can close the breaker."""
        state = self.state
        if state is _PERMANENT_OPEN:
            return None
        if state is _OPEN:
            return max(0.0, self._open_until - self._clock.monotonic())
        return 0.0

    def reset(
        self,
        force: bool = False,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> BreakerState:
        """Return to CLOSED with counters cleared.

        PERMANENT_OPEN refuses a reset unless *force* is true: the guide's
        ``breaker.reset(true)``, to be used once the root cause is fixed.
        """
        with self._lock:
            old = self._state
            if old is _PERMANENT_OPEN and not force:
                raise BreakerResetRefusedError(
                    self.name, self._permanent_reason
                )
            self._move_locked(_CLOSED)
            self._failure_count = 0
            self._trip_count = 0
            self._trips = ()
            self._in_flight = 0
            self._open_until = 0.0
            self._opened_at_wall = None
            self._permanent_reason = None
            record = self._record_locked()
        self._save(record)
        _log.warning(
            "breaker %s reset from %s to CLOSED (force=%s) by %s: %s",
            self.name,
            old,
            force,
            actor or "unknown",
            reason or "no reason given",
        )
        if self._bus is not None:
            self._bus.publish(
                Event(
                    EventKind.BREAKER_RESET,
                    self._clock.time(),
                    "CircuitBreaker",
                    f"circuit breaker {self.name} reset from {old} to CLOSED",
                    target=self._target(),
                    actor=actor,
                    reason=reason,
                    data={
                        "breaker": self.name,
                        "from": str(old),
                        "force": force,
                    },
                )
            )
        if old is not _CLOSED:
            self._notify(old, _CLOSED)
        return _CLOSED

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(breaker, old, new)`` after every transition."""
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: TransitionListener) -> None:
        self._listeners = tuple(
            entry for entry in self._listeners if entry is not listener
        )

    def snapshot(self) -> BreakerSnapshot:
        state = self.state
        next_attempt = None
        if state is _OPEN:
            next_attempt = self._clock.time() + max(
                0.0, self._open_until - self._clock.monotonic()
            )
        return BreakerSnapshot(
            name=self.name,
            state=state,
            failure_count=self._failure_count,
            trip_count=self._trip_count,
            opened_at=self._opened_at_wall if state is not _CLOSED else None,
            next_attempt_at=next_attempt,
            permanent_open_reason=self._permanent_reason,
            half_open_in_flight=self._in_flight if state is _HALF_OPEN else 0,
            settings=self._settings,
        )

    def __repr__(self) -> str:
        return (
            f"<CircuitBreaker {self.name!r} {self._state} "
            f"failures={self._failure_count} trips={self._trip_count}>"
        )

    # --------------------------------------------- persistence and reports

    def _record_locked(self) -> BreakerRecord | None:
        if self._store is None:
            return None
        offset = self._clock.time() - self._clock.monotonic()
        return BreakerRecord(
            state=str(self._state),
            failure_count=self._failure_count,
            trip_count=self._trip_count,
            trip_times=tuple(t + offset for t in self._trips),
            opened_at=self._opened_at_wall,
            permanent_open_reason=self._permanent_reason,
        )

    def _save(self, record: BreakerRecord | None) -> None:
        if record is not None and self._store is not None:
            try:
                self._store.save(self.name, record)
            except Exception:
                # Losing a write must not break the guarded call.
                _log.exception("breaker %s: state not saved", self.name)

    def _restore(self, record: BreakerRecord) -> None:
        offset = self._clock.monotonic() - self._clock.time()
        self._failure_count = record.failure_count
        self._trip_count = record.trip_count
        self._trips = tuple(t + offset for t in record.trip_times)
        self._opened_at_wall = record.opened_at
        self._permanent_reason = record.permanent_open_reason
        state = BreakerState(record.state)
        if state is _HALF_OPEN:
            state = _OPEN  # its trials died with the old process
        if state is _OPEN:
            opened = (record.opened_at or self._clock.time()) + offset
            self._open_until = opened + self._settings.recovery_timeout
        self._state = state

    def _announce(self, old: BreakerState, new: BreakerState) -> None:
        log = _log.error if new is _PERMANENT_OPEN else _log.warning
        if new is _CLOSED or new is _HALF_OPEN:
            log = _log.info
        log(
            "breaker %s: %s -> %s (failures=%d, trips=%d)",
            self.name,
            old,
            new,
            self._failure_count,
            self._trip_count,
        )
        if self._bus is not None:
            self._bus.publish(
                Event(
                    EventKind.BREAKER_TRANSITION,
                    self._clock.time(),
                    "CircuitBreaker",
                    f"circuit breaker {self.name}: {old} -> {new}",
                    target=self._target(),
                    reason=self._permanent_reason
                    if new is _PERMANENT_OPEN
                    else None,
                    data={
                        "breaker": self.name,
                        "from": str(old),
                        "to": str(new),
                        "failureCount": self._failure_count,
                        "tripCount": self._trip_count,
                    },
                )
            )
        self._notify(old, new)

    def _target(self) -> str | None:
        """``target:<name>`` breakers file their events under the target,
        so ``selfheal events --target web`` shows them too."""
        prefix, found, target = self.name.partition("target:")
        return target if found and not prefix else None

    def _notify(self, old: BreakerState, new: BreakerState) -> None:
        for listener in self._listeners:
            try:
                listener(self, old, new)
            except Exception:
                _log.exception(
                    "breaker %s: listener %r failed", self.name, listener
                )
