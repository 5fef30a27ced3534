"""A small in-process event bus: every governance decision is an Event.

The engine, breakers, task manager and flags publish; the audit store, the
API's live stream and the metrics subscribe. Publishing is synchronous and
cheap; a subscriber that raises is logged and never breaks the publisher.
"""

from __future__ import annotations

import logging
import threading
import weakref

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


__all__ = ["Event", "EventBus", "EventKind", "Subscriber"]

_log = logging.getLogger("selfhealing.events")


class EventKind(StrEnum):
    """What happened. The string values are stored in the audit trail."""

    HEALING_ATTEMPTED = "healing.attempted"
    HEALING_SUCCEEDED = "healing.succeeded"
    HEALING_FAILED = "healing.failed"
    HEALING_SKIPPED = "healing.skipped"
    HEALING_RELAPSED = "healing.relapsed"
    ACTION_RUN = "action.run"
    TARGET_UNHEALTHY = "target.unhealthy"
    TARGET_RECOVERED = "target.recovered"
    PROCESS_EXITED = "process.exited"
    LLM_ADVICE = "llm.advice"
    LLM_ESCALATED = "llm.escalated"
    KEY_STATE = "llm.key_state"
    PREVENTIVE_TRIGGERED = "preventive.triggered"
    DORMANT_ENTERED = "engine.dormant_entered"
    DORMANT_EXITED = "engine.dormant_exited"
    BREAKER_TRANSITION = "breaker.transition"
    BREAKER_RESET = "breaker.reset"
    TASK_REGISTERED = "task.registered"
    TASK_UNREGISTERED = "task.unregistered"
    TASK_PAUSED = "task.paused"
    TASK_RESUMED = "task.resumed"
    FLAG_CHANGED = "flag.changed"
    FLAG_ERROR = "flag.error"
    OPERATOR_ACTION = "operator.action"


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded fact. *at* is wall time (epoch seconds)."""

    kind: EventKind
    at: float
    component: str
    message: str
    target: str | None = None
    actor: str | None = None
    reason: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The camelCase shape used by the API and the audit trail."""
        return {
            "kind": str(self.kind),
            "at": self.at,
            "component": self.component,
            "message": self.message,
            "target": self.target,
            "actor": self.actor,
            "reason": self.reason,
            "data": dict(self.data),
        }


Subscriber = Callable[[Event], object]


class EventBus:
    """Fan events out to subscribers, in subscription order."""

    __slots__ = ("_lock", "_subscribers")

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add *subscriber*; the returned callable removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(
                    s for s in self._subscribers if s is not subscriber
                )

        return unsubscribe

    def subscribe_weakly(
        self, method: Callable[[Event], object]
    ) -> Callable[[], None]:
        """Subscribe a bound method without keeping its object alive.

        For objects that may come and go while the bus stays (runtimes
        built around the process-wide bus): once the object is collected,
        the next event removes the subscription.
        """
        ref = weakref.WeakMethod(method)

        def deliver(event: Event) -> None:
            bound = ref()
            if bound is None:
                unsubscribe()
            else:
                bound(event)

        unsubscribe = self.subscribe(deliver)
        return unsubscribe

    def publish(self, event: Event) -> None:
        # Copy-on-write tuple: publishing never takes the lock.
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                _log.exception(
                    "event subscriber %r failed on %s", subscriber, event.kind
                )

    def __len__(self) -> int:
        return len(self._subscribers)
