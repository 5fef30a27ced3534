from __future__ import annotations

import asyncio

from dataclasses import dataclass

import pytest

from selfhealing.backoff import Backoff
from selfhealing.breaker import BreakerState
from selfhealing.engine import (
    MAIN_BREAKER,
    AttemptOutcome,
    EngineMode,
    SelfHealingEngine,
    SkipReason,
)
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import InvalidReasonError
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

DORMANT_REASON = "Exceeded maximum consecutive failures (10)"


@dataclass
class Switch:
    auto_healing: bool = True


async def healed() -> bool:
    return True


async def not_healed() -> bool:
    return False


async def broken() -> bool:
    raise RuntimeError("restart failed")


def make_engine(
    clock: FakeClock,
    *,
    permanent_after_trips: int = 3,
    failure_threshold: int = 5,
    flags: Switch | None = None,
    bus: EventBus | None = None,
) -> SelfHealingEngine:
    bus = bus or EventBus()
    registry = CircuitBreakerRegistry(clock=clock, bus=bus)
    registry.configure(
        MAIN_BREAKER,
        failure_threshold=failure_threshold,
        permanent_after_trips=permanent_after_trips,
    )
    return SelfHealingEngine(
        registry=registry, flags=flags, clock=clock, bus=bus
    )


async def fail_once(engine: SelfHealingEngine, clock: FakeClock) -> None:
    """Wait out the backoff (and any open breaker), then fail one attempt."""
    wait = engine.retry_after()
    assert wait is not None
    clock.advance(wait)
    result = await engine.attempt("web", not_healed)
    assert AttemptOutcome.FAILED == result.outcome


class TestGuideWalk:
    async def test_backoff_sequence(self, clock: FakeClock) -> None:
        """backoffDelay is 5000 at rest and doubles per failure: 320000 at 6."""
        engine = make_engine(clock)
        delays = [engine.snapshot().to_dict()["backoffDelay"]]
        for _ in range(6):
            await fail_once(engine, clock)
            delays.append(engine.snapshot().to_dict()["backoffDelay"])
        assert [
            5000,
            10000,
            20000,
            40000,
            80000,
            160000,
            320000,
        ] == delays
        assert 6 == engine.snapshot().to_dict()["consecutiveFailures"]

    async def test_no_attempt_inside_the_backoff_window(
        self, clock: FakeClock
    ) -> None:
        """After a failure, an attempt before failure + backoffDelay is skipped."""
        engine = make_engine(clock)
        await fail_once(engine, clock)
        clock.advance(9.999)
        result = await engine.attempt("web", healed)
        assert SkipReason.BACKOFF == result.skip_reason
        assert pytest.approx(0.001) == result.retry_after
        assert 1 == engine.snapshot().total_attempts
        clock.advance(0.001)
        result = await engine.attempt("web", healed)
        assert AttemptOutcome.SUCCEEDED == result.outcome

    async def test_tenth_failure_enters_dormant(
        self, clock: FakeClock
    ) -> None:
        """The 10th consecutive failure enters dormant mode with the exact reason.

        The main breaker is told not to go permanent here, so the failure
        counter is what ends the walk (see test_defaults_go_permanent_first).
        """
        engine = make_engine(clock, permanent_after_trips=0)
        for _ in range(9):
            await fail_once(engine, clock)
        assert EngineMode.ACTIVE == engine.mode
        await fail_once(engine, clock)
        snapshot = engine.snapshot().to_dict()
        assert snapshot["isDormant"] is True
        assert DORMANT_REASON == snapshot["dormantReason"]
        assert "2026-01-01T" in snapshot["dormantSince"]
        assert 10 == snapshot["consecutiveFailures"]
        assert (10, 0, 10) == (
            snapshot["totalAttempts"],
            snapshot["successfulHealings"],
            snapshot["failedHealings"],
        )

    async def test_defaults_go_permanent_first(self, clock: FakeClock) -> None:
        """With default breaker settings the 8th failure makes the main
        breaker PERMANENT_OPEN (trips at failures 5, 6, 7), and that enters
        dormant mode before the failure counter reaches 10."""
        engine = make_engine(clock)
        for _ in range(7):
            await fail_once(engine, clock)
        assert EngineMode.ACTIVE == engine.mode
        await fail_once(engine, clock)
        assert engine.is_dormant
        snapshot = engine.snapshot().to_dict()
        assert (
            "Circuit breaker self-healing-main is PERMANENT_OPEN"
            == snapshot["dormantReason"]
        )
        assert BreakerState.PERMANENT_OPEN == engine.main_breaker.state

    async def test_nothing_is_attempted_while_dormant(
        self, clock: FakeClock
    ) -> None:
        """Dormant skips every attempt, for any target, however long."""
        engine = make_engine(clock, permanent_after_trips=0)
        for _ in range(10):
            await fail_once(engine, clock)
        calls: list[str] = []

        async def spy() -> bool:
            calls.append("ran")
            return True

        for target in ("web", "db", "cache"):
            clock.advance(86_400)
            result = await engine.attempt(target, spy)
            assert SkipReason.DORMANT == result.skip_reason
            assert result.retry_after is None
        assert [] == calls
        assert 10 == engine.snapshot().total_attempts
        assert engine.retry_after() is None

    async def test_resume_resets_as_spec_says(self, clock: FakeClock) -> None:
        """Resume: counters to 0, backoff to base, main breaker CLOSED, True."""
        engine = make_engine(clock)
        for _ in range(8):
            await fail_once(engine, clock)
        assert engine.is_dormant
        assert engine.resume_from_dormant("Valid API keys restored") is True
        snapshot = engine.snapshot().to_dict()
        assert snapshot["isDormant"] is False
        assert snapshot["dormantReason"] is None
        assert 0 == snapshot["consecutiveFailures"]
        assert 5000 == snapshot["backoffDelay"]
        assert BreakerState.CLOSED == engine.main_breaker.state
        assert 0 == engine.main_breaker.snapshot().trip_count
        assert "Valid API keys restored" == snapshot["lastResume"]["reason"]
        result = await engine.attempt("web", healed)
        assert AttemptOutcome.SUCCEEDED == result.outcome

    async def test_resume_when_active_returns_false(
        self, clock: FakeClock
    ) -> None:
        """Resuming an engine that is not dormant changes nothing."""
        engine = make_engine(clock)
        await fail_once(engine, clock)
        assert engine.resume_from_dormant("just checking") is False
        assert 1 == engine.consecutive_failures


class TestAttempts:
    async def test_success_resets_the_streak(self, clock: FakeClock) -> None:
        """A verified healing resets consecutiveFailures and the backoff."""
        engine = make_engine(clock)
        for _ in range(3):
            await fail_once(engine, clock)
        clock.advance(engine.retry_after() or 0)
        result = await engine.attempt("web", healed)
        assert AttemptOutcome.SUCCEEDED == result.outcome
        assert 0 == engine.consecutive_failures
        assert 0.0 == engine.retry_after()

    async def test_exception_is_a_failed_attempt(
        self, clock: FakeClock
    ) -> None:
        """An action that raises is a failure with its error recorded."""
        engine = make_engine(clock)
        result = await engine.attempt("web", broken)
        assert AttemptOutcome.FAILED == result.outcome
        assert "RuntimeError: restart failed" == result.error
        assert 1 == engine.consecutive_failures

    async def test_open_breaker_rejection_is_not_counted(
        self, clock: FakeClock
    ) -> None:
        """A call the open main breaker rejects is not an attempt."""
        engine = make_engine(clock)
        engine.main_breaker.reset()
        for _ in range(5):
            engine.main_breaker._closed_failure(RuntimeError("x"))
        assert BreakerState.OPEN == engine.main_breaker.state
        result = await engine.attempt("web", healed)
        assert SkipReason.BREAKER_OPEN == result.skip_reason
        assert 60.0 == result.retry_after
        snapshot = engine.snapshot()
        assert (0, 0, 0) == (
            snapshot.total_attempts,
            snapshot.failed_healings,
            snapshot.consecutive_failures,
        )

    async def test_waits_for_the_later_of_backoff_and_breaker(
        self, clock: FakeClock
    ) -> None:
        """retry_after is the later of the backoff deadline and half-open."""
        engine = make_engine(clock, failure_threshold=1)
        await fail_once(engine, clock)
        assert 60.0 == engine.retry_after()  # breaker 60 s > backoff 10 s

    async def test_flag_off_attempts_nothing(self, clock: FakeClock) -> None:
        """FEATURE_AUTO_HEALING_ENABLED=false: skipped, enabled false."""
        switch = Switch(auto_healing=False)
        engine = make_engine(clock, flags=switch)
        result = await engine.attempt("web", broken)
        assert SkipReason.DISABLED == result.skip_reason
        assert engine.snapshot().to_dict()["enabled"] is False
        assert 0 == engine.snapshot().total_attempts
        switch.auto_healing = True
        result = await engine.attempt("web", healed)
        assert AttemptOutcome.SUCCEEDED == result.outcome

    async def test_one_attempt_per_target_at_a_time(
        self, clock: FakeClock
    ) -> None:
        """A second attempt on a target being healed is skipped."""
        engine = make_engine(clock)
        gate = asyncio.Event()

        async def slow() -> bool:
            await gate.wait()
            return True

        first = asyncio.create_task(engine.attempt("web", slow))
        await asyncio.sleep(0)
        assert ("web",) == engine.snapshot().in_progress
        second = await engine.attempt("web", healed)
        assert SkipReason.IN_PROGRESS == second.skip_reason
        gate.set()
        assert AttemptOutcome.SUCCEEDED == (await first).outcome
        assert () == engine.snapshot().in_progress

    async def test_permanent_breaker_outside_attempts_means_dormant(
        self, clock: FakeClock
    ) -> None:
        """A main breaker found PERMANENT_OPEN puts the engine to sleep."""
        engine = make_engine(clock, failure_threshold=1)
        breaker = engine.main_breaker
        for _ in range(4):
            breaker._closed_failure(RuntimeError("x"))
            clock.advance(60)
            if breaker.state is BreakerState.HALF_OPEN:
                breaker._trial_done(breaker._generation, RuntimeError("x"))
        assert BreakerState.PERMANENT_OPEN == breaker.state
        result = await engine.attempt("web", healed)
        assert SkipReason.DORMANT == result.skip_reason
        assert (
            "Circuit breaker self-healing-main is PERMANENT_OPEN"
            == engine.snapshot().dormant_reason
        )

    async def test_cancelled_attempt_frees_the_target(
        self, clock: FakeClock
    ) -> None:
        """Cancelling an attempt propagates and releases the target."""
        engine = make_engine(clock)

        async def hang() -> bool:
            await asyncio.Event().wait()
            return True

        task = asyncio.create_task(engine.attempt("web", hang))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert () == engine.snapshot().in_progress
        assert 0 == engine.consecutive_failures


class TestEvents:
    async def test_every_decision_is_published(self, clock: FakeClock) -> None:
        """Attempted, succeeded, failed, skipped and dormant are events."""
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        engine = make_engine(
            clock, bus=bus, flags=Switch(), permanent_after_trips=0
        )
        await engine.attempt("web", healed)
        await engine.attempt("web", not_healed)
        await engine.attempt("web", healed)  # inside backoff: skipped
        kinds = [e.kind for e in events if e.component == "SelfHealing"]
        assert [
            EventKind.HEALING_ATTEMPTED,
            EventKind.HEALING_SUCCEEDED,
            EventKind.HEALING_ATTEMPTED,
            EventKind.HEALING_FAILED,
            EventKind.HEALING_SKIPPED,
        ] == kinds
        skipped = events[-1]
        assert ("web", "backoff") == (skipped.target, skipped.reason)

    async def test_dormant_entry_and_resume_are_published(
        self, clock: FakeClock
    ) -> None:
        """Dormant entry carries the reason; resume carries who and why."""
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        engine = make_engine(clock, bus=bus, permanent_after_trips=0)
        for _ in range(10):
            await fail_once(engine, clock)
        engine.resume_from_dormant("disk cleaned", actor="alice")
        entered = [e for e in events if e.kind is EventKind.DORMANT_ENTERED]
        exited = [e for e in events if e.kind is EventKind.DORMANT_EXITED]
        assert [DORMANT_REASON] == [e.reason for e in entered]
        assert [("alice", "disk cleaned")] == [
            (e.actor, e.reason) for e in exited
        ]
        resets = [e for e in events if e.kind is EventKind.BREAKER_RESET]
        assert "alice" == resets[-1].actor


class TestBadInput:
    @pytest.mark.parametrize(
        "reason",
        ["", "   ", "\n\t", "x" * 501],
        ids=["empty", "blank", "ws", "long"],
    )
    async def test_resume_needs_a_real_reason(
        self, clock: FakeClock, reason: str
    ) -> None:
        """Resume with an empty, blank or over-long reason raises."""
        engine = make_engine(clock)
        engine.enter_dormant("operator pause")
        with pytest.raises(InvalidReasonError) as info:
            engine.resume_from_dormant(reason)
        assert "reason" in str(info.value)
        assert engine.is_dormant

    async def test_reason_is_trimmed(self, clock: FakeClock) -> None:
        """Surrounding whitespace is trimmed; 500 characters are accepted."""
        engine = make_engine(clock)
        engine.enter_dormant("operator pause")
        assert engine.resume_from_dormant("  " + "x" * 500 + "  ")
        last = engine.snapshot().last_resume
        assert last is not None
        assert "x" * 500 == last["reason"]

    @pytest.mark.parametrize("value", [0, -1, True, 2.5])
    async def test_bad_max_failures(self, value: object) -> None:
        """max_consecutive_failures must be a positive integer."""
        with pytest.raises(ValueError, match=repr(value)):
            SelfHealingEngine(max_consecutive_failures=value)  # type: ignore[arg-type]

    async def test_custom_backoff(self, clock: FakeClock) -> None:
        """A custom backoff policy drives backoffDelay."""
        engine = SelfHealingEngine(
            backoff=Backoff.of(base=1, cap=4), clock=clock
        )
        for _ in range(5):
            await fail_once(engine, clock)
        assert 4000 == engine.snapshot().to_dict()["backoffDelay"]


class TestTargetBreakers:
    async def test_resume_resets_target_breakers(
        self, clock: FakeClock
    ) -> None:
        """Resuming closes every target breaker too, so all can heal."""
        engine = make_engine(clock)
        target = engine.registry.get_or_create(
            "target:web", failure_threshold=1
        )
        other = engine.registry.get_or_create("payments", failure_threshold=1)
        for breaker in (target, other):
            breaker._closed_failure(RuntimeError("x"))
        engine.enter_dormant("drill")
        assert engine.resume_from_dormant("root cause fixed")
        assert BreakerState.CLOSED == target.state
        # Breakers of the application are not the engine's to reset.
        assert BreakerState.OPEN == other.state

    async def test_open_target_breaker_skips_without_charging(
        self, clock: FakeClock
    ) -> None:
        """An open target breaker is a skip; the main breaker is untouched."""
        engine = make_engine(clock)
        target = engine.registry.get_or_create(
            "target:web", failure_threshold=1
        )
        target._closed_failure(RuntimeError("x"))
        result = await engine.attempt("web", healed, breaker=target)
        assert SkipReason.TARGET_BREAKER_OPEN == result.skip_reason
        assert (0, 0) == (
            engine.snapshot().total_attempts,
            engine.main_breaker.failure_count,
        )
