"""CircuitBreakerRegistry: breakers by name, sharing a clock, store and bus."""

from __future__ import annotations

import threading

from collections.abc import Iterator
from typing import Any

from selfhealing.breaker import (
    DEFAULT_SETTINGS,
    BreakerSettings,
    BreakerSnapshot,
    CircuitBreaker,
    TransitionListener,
)
from selfhealing.breaker_store import BreakerStateStore, MemoryBreakerStore
from selfhealing.clock import Clock, system_clock
from selfhealing.events import EventBus
from selfhealing.exceptions import ConfigError, UnknownNameError


__all__ = ["CircuitBreakerRegistry"]


class CircuitBreakerRegistry:
    """Create breakers once, find them by name.

    Settings for a name can be declared before the breaker exists
    (``configure``, fed from the config file's ``[breakers."NAME"]``); the
    first ``get_or_create`` then builds it with them.
    """

    def __init__(
        self,
        *,
        clock: Clock = system_clock,
        store: BreakerStateStore | None = None,
        bus: EventBus | None = None,
    ) -> None:
        self._clock = clock
        self._store: BreakerStateStore = (
            store if store is not None else MemoryBreakerStore()
        )
        self._bus = bus
        self._breakers: dict[str, CircuitBreaker] = {}
        self._declared: dict[str, BreakerSettings] = {}
        self._listeners: tuple[TransitionListener, ...] = ()
        self._lock = threading.Lock()

    def configure(self, name: str, **settings: Any) -> BreakerSettings:
        """Declare the settings *name* is created with (validated now)."""
        policy = BreakerSettings.of(**settings)
        with self._lock:
            if name in self._breakers:
                raise ConfigError(
                    f"breaker {name!r} already exists; configure it before "
                    "first use",
                    where=f"breakers.{name}",
                )
            self._declared[name] = policy
        return policy

    def declared(self, name: str) -> bool:
        """Whether *name* has settings (configured, or already created)."""
        return name in self._declared or name in self._breakers

    def get(self, name: str) -> CircuitBreaker:
        """The breaker called *name*; UnknownNameError if there is none."""
        try:
            return self._breakers[name]
        except KeyError:
            raise UnknownNameError(
                "circuit breaker", name, list(self._breakers)
            ) from None

    def get_or_create(self, name: str, **settings: Any) -> CircuitBreaker:
        """The breaker called *name*, created on first use.

        *settings* apply only when the breaker is created, and must agree
        with the existing breaker's otherwise: a silent mismatch would hide
        a configuration mistake.
        """
        breaker = self._breakers.get(name)
        if breaker is not None and not settings:
            return breaker
        policy = BreakerSettings.of(**settings) if settings else None
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(
                    name,
                    settings=policy
                    or self._declared.get(name, DEFAULT_SETTINGS),
                    clock=self._clock,
                    store=self._store,
                    bus=self._bus,
                    listeners=self._listeners,
                )
                self._breakers[name] = breaker
                return breaker
        if policy is not None and policy != breaker.settings:
            raise ConfigError(
                f"breaker {name!r} exists with {breaker.settings}; "
                f"asked for {policy}",
                where=f"breakers.{name}",
            )
        return breaker

    def add_listener(self, listener: TransitionListener) -> None:
        """Listen to every breaker's transitions, present and future."""
        with self._lock:
            self._listeners = (*self._listeners, listener)
            for breaker in self._breakers.values():
                breaker.add_listener(listener)

    def snapshot(self) -> list[BreakerSnapshot]:
        return [
            breaker.snapshot() for breaker in list(self._breakers.values())
        ]

    def names(self) -> list[str]:
        return list(self._breakers)

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)
