from __future__ import annotations

import asyncio
import gc
import sys
import threading
import tracemalloc

from datetime import timedelta

import pytest

from selfhealing.breaker import (
    PERMANENT_OPEN_REASON,
    BreakerSettings,
    BreakerState,
    CircuitBreaker,
)
from selfhealing.breaker_store import MemoryBreakerStore
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    BreakerResetRefusedError,
    CircuitOpenError,
    ConfigError,
    SelfHealingError,
)
from selfhealing.testing import FakeClock


class Boom(Exception):
    pass


def fail() -> None:
    raise Boom("down")


def ok() -> str:
    return "ok"


def trip(breaker: CircuitBreaker, times: int | None = None) -> None:
    """Record *times* failures (default: the breaker's threshold)."""
    for _ in range(times or breaker.settings.failure_threshold):
        with pytest.raises(Boom):
            breaker.call(fail)


@pytest.fixture(name="breaker")
def _breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        "db", failure_threshold=3, recovery_timeout=60, clock=clock
    )


class TestClosed:
    def test_passes_results_and_arguments(
        self, breaker: CircuitBreaker
    ) -> None:
        """A closed breaker returns what the guarded call returns."""
        assert 7 == breaker.call(lambda a, *, b: a + b, 3, b=4)
        assert BreakerState.CLOSED == breaker.state

    def test_trips_after_consecutive_failures(
        self, breaker: CircuitBreaker
    ) -> None:
        """failure_threshold consecutive failures open the breaker."""
        trip(breaker, 2)
        assert BreakerState.CLOSED == breaker.state
        trip(breaker, 1)
        assert BreakerState.OPEN == breaker.state
        assert 3 == breaker.failure_count
        assert 1 == breaker.trip_count

    def test_success_resets_the_failure_count(
        self, breaker: CircuitBreaker
    ) -> None:
        """A success in between means the failures were not consecutive."""
        trip(breaker, 2)
        breaker.call(ok)
        trip(breaker, 2)
        assert BreakerState.CLOSED == breaker.state
        assert 2 == breaker.failure_count

    def test_excluded_exceptions_do_not_count(self, clock: FakeClock) -> None:
        """An excluded exception propagates but is not a failure."""
        breaker = CircuitBreaker(
            "x", failure_threshold=1, excluded=[KeyError], clock=clock
        )
        for _ in range(5):
            with pytest.raises(KeyError):
                breaker.call({}.__getitem__, "missing")
        assert BreakerState.CLOSED == breaker.state
        assert 0 == breaker.failure_count

    def test_base_exceptions_do_not_count(
        self, breaker: CircuitBreaker
    ) -> None:
        """KeyboardInterrupt or cancellation is not the service's failure."""

        def interrupted() -> None:
            raise KeyboardInterrupt

        for _ in range(5):
            with pytest.raises(KeyboardInterrupt):
                breaker.call(interrupted)
        assert 0 == breaker.failure_count


class TestOpen:
    def test_rejects_without_calling(self, breaker: CircuitBreaker) -> None:
        """An open breaker raises CircuitOpenError and never runs the call."""
        trip(breaker)
        calls: list[int] = []
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(calls.append, 1)
        assert [] == calls
        assert "db" == info.value.breaker
        assert "OPEN" == info.value.state
        assert 60.0 == info.value.retry_after
        assert "circuit breaker 'db' is OPEN: retry in 60.000s" == str(
            info.value
        )
        assert isinstance(info.value, SelfHealingError)

    def test_rejections_are_not_failures(
        self, breaker: CircuitBreaker
    ) -> None:
        """A rejected call changes no counter."""
        trip(breaker)
        for _ in range(10):
            with pytest.raises(CircuitOpenError):
                breaker.call(ok)
        assert 3 == breaker.failure_count
        assert 1 == breaker.trip_count

    def test_half_opens_after_recovery_timeout(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """An open breaker admits a trial once the recovery timeout passed."""
        trip(breaker)
        clock.advance(59.999)
        assert BreakerState.OPEN == breaker.state
        assert pytest.approx(0.001) == breaker.retry_after()
        clock.advance(0.001)
        assert BreakerState.HALF_OPEN == breaker.state
        assert 0.0 == breaker.retry_after()

    def test_trial_success_closes(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """A successful trial call closes the breaker and clears failures."""
        trip(breaker)
        clock.advance(60)
        assert "ok" == breaker.call(ok)
        assert BreakerState.CLOSED == breaker.state
        assert 0 == breaker.failure_count

    def test_trial_failure_reopens(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """A failed trial opens the breaker again for a full timeout."""
        trip(breaker)
        clock.advance(60)
        trip(breaker, 1)
        assert BreakerState.OPEN == breaker.state
        assert 2 == breaker.trip_count
        clock.advance(59)
        assert BreakerState.OPEN == breaker.state

    def test_cancelled_trial_frees_its_slot(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """A trial ended by a BaseException gives no verdict but frees the slot."""
        trip(breaker)
        clock.advance(60)

        def interrupted() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            breaker.call(interrupted)
        assert BreakerState.HALF_OPEN == breaker.state
        assert "ok" == breaker.call(ok)
        assert BreakerState.CLOSED == breaker.state

    def test_rejection_keeps_no_memory(self, breaker: CircuitBreaker) -> None:
        """Ten thousand rejections leave no growing traceback behind."""
        trip(breaker)

        def reject() -> None:
            try:
                breaker.call(ok)
            except CircuitOpenError:
                pass

        for _ in range(100):
            reject()
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for _ in range(10_000):
                reject()
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert after - before < 2_000

    def test_fresh_error_per_rejection(self, breaker: CircuitBreaker) -> None:
        """Each rejection raises a new error whose traceback is one call deep."""
        trip(breaker)
        errors = []
        for _ in range(3):
            try:
                breaker.call(ok)
            except CircuitOpenError as exc:
                errors.append(exc)
        assert 3 == len({id(e) for e in errors})
        tb = errors[-1].__traceback__
        depth = 0
        while tb is not None:
            depth += 1
            tb = tb.tb_next
        assert depth <= 2


class TestPermanentOpen:
    def test_repeated_trips_go_permanent(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """After 3 trips within the window the next trip is PERMANENT_OPEN."""
        trip(breaker)
        for _ in range(2):
            clock.advance(60)
            trip(breaker, 1)
        assert BreakerState.OPEN == breaker.state
        assert 3 == breaker.trip_count
        clock.advance(60)
        trip(breaker, 1)
        assert BreakerState.PERMANENT_OPEN == breaker.state
        assert PERMANENT_OPEN_REASON == breaker.permanent_open_reason
        assert (
            "Exceeded permanent failure threshold"
            == (breaker.snapshot().to_dict()["permanentOpenReason"])
        )

    def test_old_trips_fall_out_of_the_window(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """Trips older than permanent_window do not count toward permanence."""
        trip(breaker)
        for _ in range(2):
            clock.advance(60)
            trip(breaker, 1)
        clock.advance(1800)
        trip(breaker, 1)
        assert BreakerState.OPEN == breaker.state

    def test_never_half_opens(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """PERMANENT_OPEN rejects forever, with retry_after None."""
        breaker_permanent(breaker, clock)
        clock.advance(timedelta(days=30))
        assert BreakerState.PERMANENT_OPEN == breaker.state
        with pytest.raises(CircuitOpenError) as info:
            breaker.call(ok)
        assert info.value.retry_after is None
        assert breaker.retry_after() is None
        assert "until reset(force=True)" in str(info.value)

    def test_reset_without_force_refuses(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """reset() on PERMANENT_OPEN raises a clear error and changes nothing."""
        breaker_permanent(breaker, clock)
        with pytest.raises(BreakerResetRefusedError) as info:
            breaker.reset()
        assert "'db' is PERMANENT_OPEN" in str(info.value)
        assert "reset(force=True)" in str(info.value)
        assert BreakerState.PERMANENT_OPEN == breaker.state

    def test_force_reset_closes_and_clears(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """reset(True), the guide's spelling, is the way out."""
        breaker_permanent(breaker, clock)
        assert BreakerState.CLOSED == breaker.reset(True)
        snapshot = breaker.snapshot()
        assert (0, 0, None, None) == (
            snapshot.failure_count,
            snapshot.trip_count,
            snapshot.permanent_open_reason,
            snapshot.opened_at,
        )
        assert "ok" == breaker.call(ok)

    def test_permanence_can_be_disabled(self, clock: FakeClock) -> None:
        """permanent_after_trips = 0 means the breaker never goes permanent."""
        breaker = CircuitBreaker(
            "x", failure_threshold=1, permanent_after_trips=0, clock=clock
        )
        for _ in range(20):
            trip(breaker, 1)
            clock.advance(60)
        assert BreakerState.HALF_OPEN == breaker.state


def breaker_permanent(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    for _ in range(3):
        clock.advance(60)
        trip(breaker, 1)
    assert BreakerState.PERMANENT_OPEN == breaker.state


class TestReset:
    def test_plain_reset_closes_an_open_breaker(
        self, breaker: CircuitBreaker
    ) -> None:
        """reset() without force works on OPEN."""
        trip(breaker)
        breaker.reset()
        assert BreakerState.CLOSED == breaker.state

    def test_reset_publishes_who_and_why(self, clock: FakeClock) -> None:
        """A reset is an event with its actor and reason."""
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        breaker = CircuitBreaker(
            "db", failure_threshold=1, clock=clock, bus=bus
        )
        trip(breaker, 1)
        breaker.reset(force=True, reason="disk replaced", actor="alice")
        reset = [e for e in events if e.kind is EventKind.BREAKER_RESET]
        assert 1 == len(reset)
        assert ("alice", "disk replaced") == (reset[0].actor, reset[0].reason)
        assert {"breaker": "db", "from": "OPEN", "force": True} == dict(
            reset[0].data
        )


class TestListeners:
    def test_listeners_see_every_transition(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """Listeners are called with (breaker, old, new) after each change."""
        seen: list[tuple[str, str]] = []
        breaker.add_listener(lambda b, old, new: seen.append((old, new)))
        trip(breaker)
        clock.advance(60)
        breaker.call(ok)
        assert [
            ("CLOSED", "OPEN"),
            ("OPEN", "HALF_OPEN"),
            ("HALF_OPEN", "CLOSED"),
        ] == seen

    def test_failing_listener_does_not_break_calls(
        self, breaker: CircuitBreaker
    ) -> None:
        """A listener that raises is logged; the breaker goes on."""

        def bad(*_: object) -> None:
            raise RuntimeError("listener bug")

        breaker.add_listener(bad)
        trip(breaker)
        assert BreakerState.OPEN == breaker.state

    def test_removed_listener_is_not_called(
        self, breaker: CircuitBreaker
    ) -> None:
        """remove_listener stops notifications."""
        seen: list[object] = []

        def listener(*args: object) -> None:
            seen.append(args)

        breaker.add_listener(listener)
        breaker.remove_listener(listener)
        trip(breaker)
        assert [] == seen

    def test_target_breakers_file_events_under_the_target(
        self, clock: FakeClock
    ) -> None:
        """target:web's transitions are events of target web."""
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        breaker = CircuitBreaker(
            "target:web", failure_threshold=1, clock=clock, bus=bus
        )
        trip(breaker, 1)
        assert ["web"] == [e.target for e in events]

    def test_transition_events_on_the_bus(self, clock: FakeClock) -> None:
        """Each transition is published as a breaker.transition event."""
        bus = EventBus()
        events: list[Event] = []
        bus.subscribe(events.append)
        breaker = CircuitBreaker(
            "db", failure_threshold=1, clock=clock, bus=bus
        )
        trip(breaker, 1)
        assert [EventKind.BREAKER_TRANSITION] == [e.kind for e in events]
        assert "OPEN" == events[0].data["to"]


class TestForms:
    def test_decorator_sync(self, breaker: CircuitBreaker) -> None:
        """@breaker guards a function and keeps its name."""

        @breaker
        def double(x: int) -> int:
            return 2 * x

        assert 4 == double(2)
        assert "double" == double.__name__

    @pytest.mark.anyio
    async def test_call_async_passes_arguments(
        self, breaker: CircuitBreaker
    ) -> None:
        """call_async hands positional and keyword arguments on."""

        async def add(a: int, *, b: int) -> int:
            return a + b

        assert 7 == await breaker.call_async(add, 3, b=4)

    @pytest.mark.anyio
    async def test_decorator_async(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """@breaker guards coroutine functions through call_async."""

        @breaker
        async def flaky() -> None:
            raise Boom

        for _ in range(3):
            with pytest.raises(Boom):
                await flaky()
        with pytest.raises(CircuitOpenError):
            await flaky()

    @pytest.mark.anyio
    async def test_call_async_half_open(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """call_async admits a trial in HALF_OPEN and closes on success."""

        async def fine() -> str:
            return "fine"

        trip(breaker)
        with pytest.raises(CircuitOpenError):
            await breaker.call_async(fine)
        clock.advance(60)
        assert "fine" == await breaker.call_async(fine)
        assert BreakerState.CLOSED == breaker.state

    def test_context_manager_counts_failures(
        self, breaker: CircuitBreaker
    ) -> None:
        """`with breaker:` counts an exception in the block as a failure."""
        for _ in range(3):
            with pytest.raises(Boom), breaker:
                raise Boom
        assert BreakerState.OPEN == breaker.state
        with pytest.raises(CircuitOpenError), breaker:
            pytest.fail("the block must not run")

    def test_context_manager_trial(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """A block entered in HALF_OPEN is the trial call."""
        trip(breaker)
        clock.advance(60)
        with breaker:
            pass
        assert BreakerState.CLOSED == breaker.state

    @pytest.mark.anyio
    async def test_async_context_manager(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """`async with breaker:` works like the sync form."""
        for _ in range(3):
            with pytest.raises(Boom):
                async with breaker:
                    raise Boom
        assert BreakerState.OPEN == breaker.state

    def test_nested_context_managers(self, clock: FakeClock) -> None:
        """Nested blocks on two breakers keep their own tickets."""
        a = CircuitBreaker("a", failure_threshold=1, clock=clock)
        b = CircuitBreaker("b", failure_threshold=1, clock=clock)
        with pytest.raises(Boom), a, b:
            raise Boom
        assert (BreakerState.OPEN, BreakerState.OPEN) == (a.state, b.state)


class TestSnapshot:
    def test_camel_case_fields(
        self, breaker: CircuitBreaker, clock: FakeClock
    ) -> None:
        """The snapshot carries the SPEC's camelCase fields."""
        trip(breaker)
        data = breaker.snapshot().to_dict()
        assert {
            "name": "db",
            "state": "OPEN",
            "failureCount": 3,
            "tripCount": 1,
            "openedAt": "2026-01-01T00:00:00.000Z",
            "nextAttemptAt": "2026-01-01T00:01:00.000Z",
            "permanentOpenReason": None,
        }.items() <= data.items()

    def test_closed_snapshot_has_no_times(
        self, breaker: CircuitBreaker
    ) -> None:
        """A closed breaker shows no openedAt or nextAttemptAt."""
        data = breaker.snapshot().to_dict()
        assert (None, None) == (data["openedAt"], data["nextAttemptAt"])


class TestStore:
    def test_state_survives_a_new_instance(self, clock: FakeClock) -> None:
        """A breaker rebuilt on the same store resumes its state."""
        store = MemoryBreakerStore()
        first = CircuitBreaker(
            "db", failure_threshold=1, clock=clock, store=store
        )
        trip(first, 1)
        clock.advance(30)
        second = CircuitBreaker(
            "db", failure_threshold=1, clock=clock, store=store
        )
        assert BreakerState.OPEN == second.state
        clock.advance(30)
        assert BreakerState.HALF_OPEN == second.state

    def test_permanent_state_survives(self, clock: FakeClock) -> None:
        """PERMANENT_OPEN is restored with its reason."""
        store = MemoryBreakerStore()
        first = CircuitBreaker(
            "db", failure_threshold=3, clock=clock, store=store
        )
        breaker_permanent(first, clock)
        second = CircuitBreaker("db", clock=clock, store=store)
        assert BreakerState.PERMANENT_OPEN == second.state
        assert PERMANENT_OPEN_REASON == second.permanent_open_reason

    def test_closed_success_never_writes(self, clock: FakeClock) -> None:
        """The closed, successful path does not touch the store."""

        class CountingStore(MemoryBreakerStore):
            saves = 0

            def save(self, name: str, record: object) -> None:  # type: ignore[override]
                CountingStore.saves += 1

        breaker = CircuitBreaker("db", clock=clock, store=CountingStore())
        for _ in range(100):
            breaker.call(ok)
        assert 0 == CountingStore.saves


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "where", "shown"),
        [
            ({"failure_threshold": 0}, "failure_threshold", "0"),
            ({"failure_threshold": -2}, "failure_threshold", "-2"),
            ({"failure_threshold": 2.5}, "failure_threshold", "2.5"),
            ({"failure_threshold": True}, "failure_threshold", "True"),
            ({"recovery_timeout": -1}, "recovery_timeout", "-1"),
            ({"recovery_timeout": float("nan")}, "recovery_timeout", "nan"),
            ({"half_open_max_calls": 0}, "half_open_max_calls", "0"),
            ({"permanent_after_trips": -1}, "permanent_after_trips", "-1"),
            ({"permanent_window": 0}, "permanent_window", "0"),
            ({"recovery_timeout": "60s"}, "recovery_timeout", "'60s'"),
            ({"excluded": [42]}, "excluded", "42"),
        ],
        ids=lambda v: str(v) if not isinstance(v, dict) else None,
    )
    def test_bad_settings_name_the_value(
        self, kwargs: dict[str, object], where: str, shown: str
    ) -> None:
        """Each invalid setting raises ConfigError naming field and value."""
        with pytest.raises(ConfigError) as info:
            CircuitBreaker("x", **kwargs)  # type: ignore[arg-type]
        assert where == info.value.where
        assert shown in str(info.value)

    def test_blank_name_refused(self) -> None:
        """A breaker needs a name."""
        with pytest.raises(ConfigError, match="non-empty name"):
            CircuitBreaker("  ")

    def test_settings_are_interned(self) -> None:
        """Equal settings share one object, keeping breakers small."""
        assert BreakerSettings.of() is BreakerSettings.of()
        assert BreakerSettings.of(failure_threshold=2) is BreakerSettings.of(
            failure_threshold=2
        )


class TestConcurrency:
    def test_half_open_admits_exactly_max_threads(
        self, clock: FakeClock
    ) -> None:
        """20 threads in HALF_OPEN: exactly half_open_max_calls run."""
        breaker = CircuitBreaker(
            "x", failure_threshold=1, half_open_max_calls=3, clock=clock
        )
        trip(breaker, 1)
        clock.advance(60)
        release = threading.Event()
        inside = threading.Semaphore(0)
        turned_away = threading.Semaphore(0)
        admitted: list[int] = []
        rejected: list[int] = []
        barrier = threading.Barrier(20)

        def trial(i: int) -> None:
            barrier.wait()
            try:
                breaker.call(lambda: (inside.release(), release.wait(10)))
                admitted.append(i)
            except CircuitOpenError:
                rejected.append(i)
                turned_away.release()

        threads = [
            threading.Thread(target=trial, args=(i,)) for i in range(20)
        ]
        for t in threads:
            t.start()
        # Three trials are inside the call and the 17 others were turned
        # away while those trials still run: nobody queued behind a lock.
        for _ in range(3):
            assert inside.acquire(timeout=10)
        for _ in range(17):
            assert turned_away.acquire(timeout=10)
        assert 17 == len(rejected)
        assert [] == admitted
        release.set()
        for t in threads:
            t.join(10)
        assert 3 == len(admitted)
        assert BreakerState.CLOSED == breaker.state

    @pytest.mark.anyio
    async def test_half_open_admits_exactly_max_tasks(
        self, clock: FakeClock
    ) -> None:
        """20 asyncio tasks in HALF_OPEN: exactly half_open_max_calls run."""
        breaker = CircuitBreaker(
            "x", failure_threshold=1, half_open_max_calls=2, clock=clock
        )
        trip(breaker, 1)
        clock.advance(60)
        gate = asyncio.Event()

        async def slow() -> str:
            await gate.wait()
            return "ok"

        async def trial() -> bool:
            try:
                await breaker.call_async(slow)
            except CircuitOpenError:
                return False
            return True

        tasks = [asyncio.create_task(trial()) for _ in range(20)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks)
        assert 2 == sum(results)
        assert BreakerState.CLOSED == breaker.state

    def test_sixteen_thread_hammer_keeps_counts_exact(
        self, clock: FakeClock
    ) -> None:
        """16 threads failing at once: every failure counted exactly once."""
        breaker = CircuitBreaker("x", failure_threshold=1_000_000, clock=clock)
        per_thread = 2_000
        barrier = threading.Barrier(16)

        def hammer() -> None:
            barrier.wait()
            for _ in range(per_thread):
                try:
                    breaker.call(fail)
                except Boom:
                    pass

        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=hammer) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            sys.setswitchinterval(switch)
        assert 16 * per_thread == breaker.failure_count

    def test_hammer_trips_exactly_once(self, clock: FakeClock) -> None:
        """Racing failures past the threshold trip the breaker once."""
        breaker = CircuitBreaker("x", failure_threshold=50, clock=clock)
        barrier = threading.Barrier(16)

        def hammer() -> None:
            barrier.wait()
            for _ in range(100):
                try:
                    breaker.call(fail)
                except (Boom, CircuitOpenError):
                    pass

        threads = [threading.Thread(target=hammer) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert 1 == breaker.trip_count
        assert 50 == breaker.failure_count
