from __future__ import annotations

import gc
import logging

import pytest

from selfhealing.events import Event, EventBus, EventKind


def event(message: str = "m") -> Event:
    return Event(EventKind.HEALING_ATTEMPTED, 1.0, "SelfHealing", message)


class TestEventBus:
    def test_delivers_in_subscription_order(self) -> None:
        """Every subscriber sees every event, first subscribed first."""
        bus = EventBus()
        seen: list[str] = []
        bus.subscribe(lambda e: seen.append("a:" + e.message))
        bus.subscribe(lambda e: seen.append("b:" + e.message))
        bus.publish(event("x"))
        assert ["a:x", "b:x"] == seen

    def test_unsubscribe(self) -> None:
        """The callable returned by subscribe removes the subscriber."""
        bus = EventBus()
        seen: list[Event] = []
        unsubscribe = bus.subscribe(seen.append)
        unsubscribe()
        bus.publish(event())
        assert ([], 0) == (seen, len(bus))

    def test_weak_subscription_ends_with_its_object(self) -> None:
        """A weakly subscribed method gets events while its object lives,
        and the subscription goes with the object."""
        bus = EventBus()

        class Listener:
            def __init__(self) -> None:
                self.seen: list[str] = []

            def on_event(self, e: Event) -> None:
                self.seen.append(e.message)

        listener = Listener()
        bus.subscribe_weakly(listener.on_event)
        bus.publish(event("x"))
        assert ["x"] == listener.seen
        del listener
        gc.collect()
        bus.publish(event("y"))
        assert 0 == len(bus)

    def test_failing_subscriber_is_isolated(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A subscriber that raises is logged; the others still get it."""
        bus = EventBus()
        seen: list[Event] = []

        def broken(_: Event) -> None:
            raise RuntimeError("bug")

        bus.subscribe(broken)
        bus.subscribe(seen.append)
        with caplog.at_level(logging.ERROR, "selfhealing.events"):
            bus.publish(event())
        assert 1 == len(seen)
        assert "healing.attempted" in caplog.text


class TestEvent:
    def test_to_dict(self) -> None:
        """Events serialize with the kind as its stored string."""
        e = Event(
            EventKind.DORMANT_EXITED,
            2.5,
            "SelfHealing",
            "resumed",
            actor="alice",
            reason="fixed",
            data={"previousReason": "x"},
        )
        assert {
            "kind": "engine.dormant_exited",
            "at": 2.5,
            "component": "SelfHealing",
            "message": "resumed",
            "target": None,
            "actor": "alice",
            "reason": "fixed",
            "data": {"previousReason": "x"},
        } == e.to_dict()
