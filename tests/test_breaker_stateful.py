"""A model-based test: the breaker against a plain reference model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from selfhealing.breaker import BreakerState, CircuitBreaker
from selfhealing.exceptions import BreakerResetRefusedError, CircuitOpenError
from selfhealing.testing import FakeClock


CLOSED_TICKET = "closed"


class Boom(Exception):
    pass


@dataclass
class Model:
    """The rules of SPEC, written as plainly as possible."""

    threshold: int
    recovery: float
    max_trials: int
    permanent_after: int
    window: float
    now: float = 0.0
    state: str = "CLOSED"
    failures: int = 0
    trip_count: int = 0
    trips: list[float] = field(default_factory=list)
    open_until: float = 0.0
    in_flight: int = 0
    generation: int = 0

    def refresh(self) -> None:
        if self.state == "OPEN" and self.now >= self.open_until:
            self.state = "HALF_OPEN"
            self.in_flight = 0
            self.generation += 1

    def admit(self) -> str | int | None:
        self.refresh()
        if self.state == "CLOSED":
            return CLOSED_TICKET
        if self.state == "HALF_OPEN" and self.in_flight < self.max_trials:
            self.in_flight += 1
            return self.generation
        return None

    def trip(self) -> None:
        recent = [t for t in self.trips if t > self.now - self.window]
        self.trips = [*recent, self.now]
        self.trip_count += 1
        self.generation += 1
        if self.permanent_after and len(recent) >= self.permanent_after:
            self.state = "PERMANENT_OPEN"
        else:
            self.state = "OPEN"
            self.open_until = self.now + self.recovery

    def complete(self, ticket: str | int, success: bool) -> None:
        if ticket == CLOSED_TICKET:
            if self.state != "CLOSED":
                return
            if success:
                self.failures = 0
            else:
                self.failures += 1
                if self.failures >= self.threshold:
                    self.trip()
            return
        if ticket != self.generation or self.state != "HALF_OPEN":
            return
        self.in_flight -= 1
        if success:
            self.state = "CLOSED"
            self.failures = 0
            self.generation += 1
        else:
            self.failures += 1
            self.trip()

    def reset(self, force: bool) -> bool:
        self.refresh()
        if self.state == "PERMANENT_OPEN" and not force:
            return False
        self.state = "CLOSED"
        self.failures = 0
        self.trip_count = 0
        self.trips = []
        self.in_flight = 0
        self.generation += 1
        return True


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.pending: list[tuple[str | int, object]] = []
        self.breaker: CircuitBreaker
        self.model: Model

    @initialize(
        threshold=st.integers(1, 4),
        recovery=st.sampled_from([0.0, 1.0, 10.0]),
        max_trials=st.integers(1, 3),
        permanent_after=st.integers(0, 3),
        window=st.sampled_from([5.0, 60.0]),
    )
    def setup(
        self,
        threshold: int,
        recovery: float,
        max_trials: int,
        permanent_after: int,
        window: float,
    ) -> None:
        self.breaker = CircuitBreaker(
            "model",
            failure_threshold=threshold,
            recovery_timeout=recovery,
            half_open_max_calls=max_trials,
            permanent_after_trips=permanent_after,
            permanent_window=window,
            clock=self.clock,
        )
        self.model = Model(
            threshold, recovery, max_trials, permanent_after, window
        )

    def _call(self, success: bool) -> None:
        expected = self.model.admit()
        ran: list[bool] = []

        def guarded() -> str:
            ran.append(True)
            if not success:
                raise Boom
            return "ok"

        if expected is None:
            with pytest.raises(CircuitOpenError):
                self.breaker.call(guarded)
            assert [] == ran
            return
        if success:
            assert "ok" == self.breaker.call(guarded)
        else:
            with pytest.raises(Boom):
                self.breaker.call(guarded)
        assert [True] == ran
        self.model.complete(expected, success)

    @rule()
    def succeed(self) -> None:
        self._call(success=True)

    @rule()
    def fail(self) -> None:
        self._call(success=False)

    @rule()
    def begin_block(self) -> None:
        """Enter the breaker as a context manager and keep the block open."""
        expected = self.model.admit()
        if expected is None:
            with pytest.raises(CircuitOpenError):
                self.breaker.__enter__()
            return
        self.breaker.__enter__()
        self.pending.append((expected, None))

    @precondition(lambda self: self.pending)
    @rule(success=st.booleans())
    def end_block(self, success: bool) -> None:
        """Leave the innermost open block, with or without an error."""
        ticket, _ = self.pending.pop()
        exc = None if success else Boom()
        self.breaker.__exit__(None if exc is None else Boom, exc, None)
        self.model.complete(ticket, success)

    @rule(dt=st.sampled_from([0.5, 1.0, 5.0, 10.0, 61.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)
        self.model.now += dt

    @rule(force=st.booleans())
    def reset(self, force: bool) -> None:
        allowed = self.model.reset(force)
        if allowed:
            assert BreakerState.CLOSED == self.breaker.reset(force)
        else:
            with pytest.raises(BreakerResetRefusedError):
                self.breaker.reset(force)

    @invariant()
    def matches_model(self) -> None:
        self.model.refresh()
        assert self.model.state == self.breaker.state
        assert self.model.failures == self.breaker.failure_count
        assert self.model.trip_count == self.breaker.trip_count

    @invariant()
    def trials_bounded(self) -> None:
        snapshot = self.breaker.snapshot()
        assert (
            0
            <= snapshot.half_open_in_flight
            <= self.breaker.settings.half_open_max_calls
        )

    @invariant()
    def permanent_reason_iff_permanent(self) -> None:
        snapshot = self.breaker.snapshot()
        permanent = snapshot.state is BreakerState.PERMANENT_OPEN
        assert permanent == (snapshot.permanent_open_reason is not None)
        assert permanent == (self.breaker.retry_after() is None)


BreakerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
TestBreakerModel = BreakerMachine.TestCase
