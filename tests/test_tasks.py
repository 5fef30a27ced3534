from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from selfhealing import tasks
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import ConfigError, UnknownNameError
from selfhealing.tasks import (
    LATENESS_SAMPLES,
    BackgroundTaskManager,
    TaskManagerSnapshot,
    TaskSnapshot,
    TaskState,
)
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

# A safety net for worker threads only; FakeClock drives all timing logic.
THREAD_TIMEOUT = 5.0


@pytest.fixture(name="bus")
def _bus() -> EventBus:
    return EventBus()


@pytest.fixture(name="events")
def _events(bus: EventBus) -> list[Event]:
    seen: list[Event] = []
    bus.subscribe(seen.append)
    return seen


@pytest.fixture(name="manager")
async def _manager(
    clock: FakeClock, bus: EventBus
) -> AsyncIterator[BackgroundTaskManager]:
    manager = BackgroundTaskManager(clock=clock, bus=bus)
    yield manager
    await manager.shutdown()


def _recorder(clock: FakeClock) -> tuple[list[float], Callable[[], object]]:
    """An async task fn that records the clock time of each call."""
    calls: list[float] = []

    async def fn() -> None:
        calls.append(clock.monotonic())

    return calls, fn


def _task(manager: BackgroundTaskManager, task_id: str) -> TaskSnapshot:
    (snap,) = (t for t in manager.snapshot().tasks if t.id == task_id)
    return snap


async def _finish_run(manager: BackgroundTaskManager, task_id: str) -> None:
    """Wait (with a real timeout) for a run in a worker thread to end."""
    run = manager._tasks[task_id].run
    assert run is not None
    await asyncio.wait_for(asyncio.shield(run), THREAD_TIMEOUT)


class TestScheduling:
    async def test_runs_on_fixed_ticks(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """The first run comes after one interval, then one per interval."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        await manager.start()

        await clock.run_for(0.5)
        assert [] == calls

        await clock.run_for(3.5)
        assert [1.0, 2.0, 3.0, 4.0] == calls
        assert 4 == _task(manager, "t").runs

    async def test_initial_delay_zero_runs_at_once(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """An initial delay of 0 runs the task at once, then on the grid."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 2, initial_delay=0)
        await manager.start()

        await clock.run_for(4)

        assert [0.0, 2.0, 4.0] == calls

    async def test_accepts_timedelta(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Intervals and initial delays may be given as timedelta."""
        calls, fn = _recorder(clock)
        manager.register_interval(
            "t",
            fn,
            timedelta(seconds=2),
            initial_delay=timedelta(milliseconds=500),
        )
        await manager.start()

        await clock.run_for(3)

        assert [0.5, 2.5] == calls
        assert 2.0 == _task(manager, "t").interval

    async def test_slow_run_skips_ticks_and_never_overlaps(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Ticks that find the previous run going are skipped, not overlapped."""
        active = 0
        most = 0

        async def slow() -> None:
            nonlocal active, most
            active += 1
            most = max(most, active)
            await clock.sleep(3.5)
            active -= 1

        manager.register_interval("t", slow, 1)
        await manager.start()

        # Runs start at 1, 5 and 9; ticks 2-4, 6-8 and 10 are skipped.
        await clock.run_for(10)

        snap = _task(manager, "t")
        assert 1 == most
        assert (3, 7) == (snap.runs, snap.skipped)
        assert TaskState.RUNNING == snap.state

    async def test_no_catch_up_burst_after_a_stall(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Waking many ticks late runs once and counts the rest as skipped."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        await manager.start()

        clock.advance(10)
        await clock.settle()

        assert [10.0] == calls
        assert 9 == _task(manager, "t").skipped

        await clock.run_for(2)

        assert [10.0, 11.0, 12.0] == calls

    async def test_lateness_is_recorded(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Each run records how late it started against its due time."""
        _, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        await manager.start()

        clock.advance(1.25)
        await clock.settle()
        await clock.run_for(0.75)

        assert (0.25, 0.0) == manager.lateness("t")

    async def test_lateness_is_bounded(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Only the most recent lateness samples are kept."""
        _, fn = _recorder(clock)
        manager.register_interval("t", fn, 1, initial_delay=0)
        await manager.start()

        await clock.run_for(LATENESS_SAMPLES + 10)

        assert LATENESS_SAMPLES + 11 == _task(manager, "t").runs
        assert LATENESS_SAMPLES == len(manager.lateness("t"))

    async def test_sync_fn_runs_in_a_worker_thread(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A sync callable runs off the loop's thread."""
        threads: list[int] = []
        manager.register_interval(
            "t", lambda: threads.append(threading.get_ident()), 1
        )
        await manager.start()

        await clock.run_for(1)
        await _finish_run(manager, "t")

        assert 1 == len(threads)
        assert threading.get_ident() != threads[0]
        assert 1 == _task(manager, "t").runs

    async def test_sync_fn_returning_a_coroutine_is_awaited(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A sync callable that returns an awaitable has it awaited."""
        done: list[int] = []

        async def work() -> None:
            done.append(threading.get_ident())

        manager.register_interval("t", lambda: work(), 1)
        await manager.start()

        await clock.run_for(1)
        await _finish_run(manager, "t")

        assert [threading.get_ident()] == done

    @pytest.mark.parametrize(
        ("fn", "expected"),
        [
            pytest.param(lambda: None, False, id="sync"),
            pytest.param(asyncio.sleep, True, id="async"),
            pytest.param(
                functools.partial(asyncio.sleep, 0), True, id="partial"
            ),
            pytest.param(
                lambda: asyncio.sleep(0), False, id="returns-coroutine"
            ),
        ],
    )
    def test_detects_async_callables(
        self, fn: Callable[[], object], expected: bool
    ) -> None:
        """Coroutine functions run on the loop, everything else in a thread."""
        assert expected == tasks._is_async(fn)

    def test_detects_async_call_method(self) -> None:
        """An object with an ``async def __call__`` counts as async."""

        class Check:
            async def __call__(self) -> None:
                return None

        assert tasks._is_async(Check())


class TestRegistration:
    async def test_same_id_replaces_never_duplicates(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Registering an id three times leaves one task running the last fn."""
        first, fn1 = _recorder(clock)
        second, fn2 = _recorder(clock)
        third, fn3 = _recorder(clock)
        await manager.start()

        for fn in (fn1, fn2, fn3):
            manager.register_interval("t", fn, 1)
        await clock.run_for(3)

        assert 1 == len(manager)
        assert ([], [], [1.0, 2.0, 3.0]) == (first, second, third)
        assert 1 == manager.snapshot().total_tasks

    async def test_replacing_lets_the_old_run_finish_uncounted(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A replaced task's run in progress finishes but is not counted."""
        finished: list[float] = []

        async def slow() -> None:
            await clock.sleep(2.25)
            finished.append(clock.monotonic())

        manager.register_interval("t", slow, 1)
        await manager.start()
        await clock.run_for(1.5)

        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        await clock.run_for(3)

        assert [3.25] == finished
        assert [2.5, 3.5, 4.5] == calls
        snap = _task(manager, "t")
        assert (3, 0, 0) == (snap.runs, snap.skipped, snap.failures)

    async def test_registered_before_start_waits_for_start(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Tasks registered before start() run only once started."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)

        await clock.run_for(5)
        assert [] == calls
        assert _task(manager, "t").next_run_at is None

        await manager.start()
        await clock.run_for(1)

        assert [6.0] == calls

    async def test_start_twice_does_not_duplicate(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Calling start() again on the same loop changes nothing."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)

        await manager.start()
        await manager.start()
        await clock.run_for(2)

        assert [1.0, 2.0] == calls

    async def test_start_on_another_loop_is_refused(
        self, manager: BackgroundTaskManager
    ) -> None:
        """A manager bound to a running loop refuses to start on another."""
        await manager.start()

        with pytest.raises(RuntimeError, match="another event loop"):
            await asyncio.to_thread(asyncio.run, manager.start())

    async def test_start_after_a_loop_closed_without_shutdown(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A manager whose loop ended without shutdown() starts cleanly again."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)

        await asyncio.to_thread(asyncio.run, manager.start())
        await manager.start()
        await clock.run_for(1)

        assert [1.0] == calls

    async def test_stale_cross_thread_callback_starts_nothing(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A thread's callback arriving after a replacement starts nothing."""
        stale_calls, stale = _recorder(clock)
        calls, fn = _recorder(clock)
        manager.register_interval("t", stale, 1)
        stale_entry = manager._tasks["t"]
        manager.register_interval("t", fn, 1)
        await manager.start()

        # What call_soon_threadsafe may deliver late from a racing thread.
        manager._swap(None, stale_entry)
        await clock.run_for(1)

        assert ([], [1.0]) == (stale_calls, calls)

    async def test_register_from_another_thread(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A registration from a worker thread is visible and runs on the loop."""
        calls, fn = _recorder(clock)
        await manager.start()

        await asyncio.to_thread(manager.register_interval, "t", fn, 1)

        assert "t" in manager
        await clock.run_for(2)
        assert [1.0, 2.0] == calls

    async def test_concurrent_registrations_from_threads(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Threads racing to register one id leave exactly one task."""
        calls: list[int] = []

        async def fn(i: int) -> None:
            calls.append(i)

        await manager.start()
        barrier = threading.Barrier(8)

        def worker(i: int) -> None:
            barrier.wait(THREAD_TIMEOUT)
            manager.register_interval("t", functools.partial(fn, i), 1)

        def race() -> None:
            threads = [
                threading.Thread(target=worker, args=(i,)) for i in range(8)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(THREAD_TIMEOUT)

        await asyncio.to_thread(race)
        await clock.run_for(1)

        assert 1 == len(manager)
        assert 1 == len(calls)
        assert 1 == _task(manager, "t").runs


class TestFailures:
    async def test_failures_counted_and_schedule_kept(
        self,
        manager: BackgroundTaskManager,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A raising run is counted and logged, and the task keeps running."""

        async def boom() -> None:
            raise ValueError("boom")

        caplog.set_level(logging.WARNING, logger="selfhealing.tasks")
        manager.register_interval("t", boom, 1)
        await manager.start()

        await clock.run_for(3)

        snap = _task(manager, "t")
        assert (3, 3) == (snap.runs, snap.failures)
        assert "ValueError: boom" == snap.last_error
        assert TaskState.SCHEDULED == snap.state
        assert 3 * ["task t failed: ValueError: boom"] == [
            r.getMessage()
            for r in caplog.records
            if r.name == "selfhealing.tasks" and r.levelname == "WARNING"
        ]

    async def test_last_error_is_cut_to_300_characters(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A long error message is stored cut to 300 characters."""

        async def boom() -> None:
            raise RuntimeError("x" * 1000)

        manager.register_interval("t", boom, 1)
        await manager.start()

        await clock.run_for(1)

        error = _task(manager, "t").last_error
        assert error is not None
        assert 300 == len(error)
        assert error.startswith("RuntimeError: xxx")

    async def test_sync_failure_is_counted(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A sync callable that raises in its thread is counted as a failure."""

        def boom() -> None:
            raise KeyError("missing")

        manager.register_interval("t", boom, 1)
        await manager.start()

        await clock.run_for(1)
        await _finish_run(manager, "t")

        snap = _task(manager, "t")
        assert 1 == snap.failures
        assert "KeyError: 'missing'" == snap.last_error


class TestPause:
    async def test_pause_and_resume_one_task(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A paused task does not run; resumed, it continues on its grid."""
        calls, fn = _recorder(clock)
        other, other_fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        manager.register_interval("other", other_fn, 1)
        await manager.start()
        await clock.run_for(2)

        manager.pause("t")
        await clock.run_for(3)

        snap = _task(manager, "t")
        assert (TaskState.PAUSED, None) == (snap.state, snap.next_run_at)
        assert [1.0, 2.0] == calls
        assert 5 == len(other)

        manager.resume("t")
        await clock.settle()
        assert [1.0, 2.0] == calls

        await clock.run_for(1)
        assert [1.0, 2.0, 6.0] == calls
        assert 0 == _task(manager, "t").skipped

    async def test_pause_twice_is_idempotent(
        self, manager: BackgroundTaskManager, events: list[Event]
    ) -> None:
        """Pausing a paused task (or resuming a running one) publishes nothing."""
        manager.register_interval("t", lambda: None, 1)
        manager.pause("t")
        manager.pause("t")
        manager.resume("t")
        manager.resume("t")

        assert [
            EventKind.TASK_REGISTERED,
            EventKind.TASK_PAUSED,
            EventKind.TASK_RESUMED,
        ] == [e.kind for e in events]

    async def test_run_in_progress_finishes_when_paused(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """Pausing lets a run in progress finish, then runs no more."""
        finished: list[float] = []

        async def slow() -> None:
            await clock.sleep(0.5)
            finished.append(clock.monotonic())

        manager.register_interval("t", slow, 1)
        await manager.start()
        await clock.run_for(1.25)

        manager.pause("t")
        await clock.run_for(3)

        snap = _task(manager, "t")
        assert [1.5] == finished
        assert (1, 0.5) == (snap.runs, snap.last_duration)

    async def test_pause_all_and_resume_all(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """pause_all and resume_all apply to every task and count changes."""
        counts = {}
        for name in ("a", "b", "c"):
            counts[name], fn = _recorder(clock)
            manager.register_interval(name, fn, 1)
        await manager.start()
        manager.pause("a")

        assert 2 == manager.pause_all()
        assert 0 == manager.pause_all()
        assert 0 == manager.snapshot().active_tasks
        await clock.run_for(3)
        assert {"a": [], "b": [], "c": []} == counts

        assert 3 == manager.resume_all()
        assert 0 == manager.resume_all()
        await clock.run_for(1)
        assert {"a": [4.0], "b": [4.0], "c": [4.0]} == counts

    @pytest.mark.parametrize("method", ["pause", "resume", "lateness"])
    async def test_unknown_id_raises(
        self, manager: BackgroundTaskManager, method: str
    ) -> None:
        """Per-task calls on an unknown id raise UnknownNameError."""
        with pytest.raises(UnknownNameError, match="nope"):
            getattr(manager, method)("nope")


class TestUnregisterAndCleanup:
    async def test_unregister_stops_the_task(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """An unregistered task is forgotten and never runs again."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        await manager.start()
        await clock.run_for(1)

        manager.unregister("t")
        await clock.run_for(3)

        assert [1.0] == calls
        assert "t" not in manager
        assert 0 == len(manager)

    async def test_unregister_unknown_id_raises(
        self, manager: BackgroundTaskManager
    ) -> None:
        """Unregistering an unknown id names it and the known ids."""
        manager.register_interval("known", lambda: None, 1)

        with pytest.raises(UnknownNameError) as info:
            manager.unregister("nope")

        assert "unknown task 'nope' (known: known)" == str(info.value)
        assert isinstance(info.value, KeyError)
        assert ("task", "nope") == (info.value.kind, info.value.name)

    async def test_cleanup_returns_count_and_cancels(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """cleanup() cancels every task, including runs in progress."""
        runs: list[asyncio.Task[object] | None] = []

        async def forever() -> None:
            runs.append(asyncio.current_task())
            await asyncio.Event().wait()

        calls, fn = _recorder(clock)
        manager.register_interval("a", fn, 1)
        manager.register_interval("b", fn, 1)
        manager.register_interval("c", forever, 1)
        await manager.start()
        await clock.run_for(1)

        assert 3 == manager.cleanup()
        await clock.run_for(5)

        assert 0 == len(manager)
        assert [1.0, 1.0] == calls
        assert runs[0] is not None
        assert runs[0].cancelled()
        assert 0 == manager.cleanup()


class TestShutdown:
    async def test_shutdown_cancels_running_runs(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """shutdown() cancels runs in progress; CancelledError is not swallowed."""
        runs: list[asyncio.Task[object] | None] = []
        saw_cancel: list[bool] = []

        async def forever() -> None:
            runs.append(asyncio.current_task())
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                saw_cancel.append(True)
                raise

        manager.register_interval("t", forever, 1)
        await manager.start()
        await clock.run_for(1)

        await manager.shutdown()

        assert [True] == saw_cancel
        assert runs[0] is not None
        assert runs[0].done()
        assert runs[0].cancelled()
        assert not manager._live
        snap = _task(manager, "t")
        assert (TaskState.SCHEDULED, None) == (snap.state, snap.next_run_at)

    async def test_shutdown_does_not_wait_for_worker_threads(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """shutdown() returns even while a sync run blocks in its thread."""
        started = threading.Event()
        release = threading.Event()

        def blocked() -> None:
            started.set()
            release.wait(THREAD_TIMEOUT)

        manager.register_interval("t", blocked, 1)
        await manager.start()
        await clock.run_for(1)
        assert await asyncio.to_thread(started.wait, THREAD_TIMEOUT)

        try:
            await manager.shutdown()
            assert not manager._live
        finally:
            release.set()

    async def test_can_start_again_after_shutdown(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """After shutdown the tasks stay registered and start() runs them again."""
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        await manager.start()
        await clock.run_for(1)
        await manager.shutdown()

        await clock.run_for(3)
        assert [1.0] == calls

        await manager.start()
        await clock.run_for(1)
        assert [1.0, 5.0] == calls
        assert 2 == _task(manager, "t").runs


class TestSnapshot:
    async def test_to_dict_shape(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """The snapshot serializes to camelCase keys with ISO timestamps."""

        async def half_second() -> None:
            await clock.sleep(0.5)

        manager.register_interval("a", half_second, 2)
        manager.register_interval("b", lambda: None, 60)
        manager.pause("b")
        await manager.start()
        await clock.run_for(3)

        assert {
            "totalTasks": 2,
            "activeTasks": 1,
            "tasks": [
                {
                    "id": "a",
                    "interval": 2.0,
                    "state": "scheduled",
                    "runs": 1,
                    "failures": 0,
                    "skipped": 0,
                    "lastRunAt": "2026-01-01T00:00:02.000Z",
                    "lastDurationMs": 500.0,
                    "lastError": None,
                    "nextRunAt": "2026-01-01T00:00:04.000Z",
                    "kind": "task",
                },
                {
                    "id": "b",
                    "interval": 60.0,
                    "state": "paused",
                    "runs": 0,
                    "failures": 0,
                    "skipped": 0,
                    "lastRunAt": None,
                    "lastDurationMs": None,
                    "lastError": None,
                    "nextRunAt": None,
                    "kind": "task",
                },
            ],
        } == manager.snapshot().to_dict()

    async def test_snapshot_shows_running(
        self, manager: BackgroundTaskManager, clock: FakeClock
    ) -> None:
        """A task whose run is in progress reports RUNNING."""

        async def slow() -> None:
            await clock.sleep(0.5)

        manager.register_interval("t", slow, 1)
        await manager.start()
        await clock.run_for(1.25)

        snapshot = manager.snapshot()
        assert isinstance(snapshot, TaskManagerSnapshot)
        assert TaskState.RUNNING == snapshot.tasks[0].state
        assert 1 == snapshot.active_tasks

    async def test_len_and_contains(
        self, manager: BackgroundTaskManager
    ) -> None:
        """len() counts tasks and ``in`` tests ids."""
        manager.register_interval("a", lambda: None, 1)
        manager.register_interval("b", lambda: None, 1)

        assert 2 == len(manager)
        assert "a" in manager
        assert "z" not in manager
        assert ["x"] not in manager
        assert "tasks=2, started=False" in repr(manager)

    def test_all_is_sorted_and_complete(self) -> None:
        """The module exports a sorted __all__ of names that exist."""
        assert sorted(tasks.__all__) == tasks.__all__
        assert all(hasattr(tasks, name) for name in tasks.__all__)


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            pytest.param({"task_id": ""}, "''", id="empty-id"),
            pytest.param({"task_id": "  "}, "'  '", id="blank-id"),
            pytest.param({"task_id": 42}, "42", id="int-id"),
            pytest.param({"task_id": None}, "None", id="none-id"),
            pytest.param({"fn": None}, "None", id="none-fn"),
            pytest.param({"fn": "check"}, "'check'", id="str-fn"),
            pytest.param({"interval": 0}, "got 0", id="zero"),
            pytest.param({"interval": -1.5}, "-1.5", id="negative"),
            pytest.param({"interval": math.nan}, "nan", id="nan"),
            pytest.param({"interval": math.inf}, "inf", id="inf"),
            pytest.param({"interval": True}, "True", id="bool"),
            pytest.param({"interval": "5s"}, "'5s'", id="str"),
            pytest.param(
                {"interval": timedelta(0)}, "timedelta(0)", id="zero-delta"
            ),
            pytest.param({"initial_delay": -1}, "-1", id="negative-delay"),
            pytest.param({"initial_delay": math.nan}, "nan", id="nan-delay"),
            pytest.param({"initial_delay": math.inf}, "inf", id="inf-delay"),
            pytest.param(
                {"initial_delay": timedelta(seconds=-1)},
                "timedelta(days=-1",
                id="negative-delta-delay",
            ),
        ],
    )
    def test_bad_input_raises_config_error(
        self, kwargs: dict[str, object], fragment: str
    ) -> None:
        """Every bad argument raises ConfigError naming the offending value."""
        manager = BackgroundTaskManager(clock=FakeClock())
        args: dict[str, object] = {
            "task_id": "t",
            "fn": lambda: None,
            "interval": 1,
        } | kwargs

        with pytest.raises(ConfigError) as info:
            manager.register_interval(**args)  # type: ignore[arg-type]

        assert fragment in str(info.value)
        assert 0 == len(manager)

    def test_zero_initial_delay_is_allowed(self) -> None:
        """An initial delay of exactly 0 is valid."""
        manager = BackgroundTaskManager(clock=FakeClock())

        manager.register_interval("t", lambda: None, 1, initial_delay=0)

        assert "t" in manager


class TestEvents:
    async def test_lifecycle_events_are_published(
        self,
        manager: BackgroundTaskManager,
        clock: FakeClock,
        events: list[Event],
    ) -> None:
        """Register, replace, pause, resume and unregister each publish."""
        clock.advance(7)
        manager.register_interval("t", lambda: None, 1)
        manager.register_interval("t", lambda: None, 2)
        manager.pause("t")
        manager.resume("t")
        manager.unregister("t")

        assert [
            EventKind.TASK_REGISTERED,
            EventKind.TASK_REGISTERED,
            EventKind.TASK_PAUSED,
            EventKind.TASK_RESUMED,
            EventKind.TASK_UNREGISTERED,
        ] == [e.kind for e in events]
        assert {"BackgroundTaskManager"} == {e.component for e in events}
        assert {"t"} == {e.target for e in events}
        assert {clock.time()} == {e.at for e in events}
        assert {"interval": 2.0, "replaced": True} == events[1].data

    async def test_cleanup_publishes_one_event_per_task(
        self, manager: BackgroundTaskManager, events: list[Event]
    ) -> None:
        """cleanup() publishes TASK_UNREGISTERED for each task it removes."""
        manager.register_interval("a", lambda: None, 1)
        manager.register_interval("b", lambda: None, 1)
        events.clear()

        manager.cleanup()

        assert [
            (EventKind.TASK_UNREGISTERED, "a"),
            (EventKind.TASK_UNREGISTERED, "b"),
        ] == [(e.kind, e.target) for e in events]

    async def test_registration_is_logged(
        self,
        manager: BackgroundTaskManager,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Registration logs a short INFO line naming the task and interval."""
        caplog.set_level(logging.INFO, logger="selfhealing.tasks")

        manager.register_interval("t", lambda: None, 5)

        assert ["registered task t every 5.0s"] == [
            r.getMessage()
            for r in caplog.records
            if r.name == "selfhealing.tasks"
        ]

    async def test_works_without_a_bus(self, clock: FakeClock) -> None:
        """A manager without a bus runs tasks and publishes nothing."""
        manager = BackgroundTaskManager(clock=clock)
        calls, fn = _recorder(clock)
        manager.register_interval("t", fn, 1)
        await manager.start()
        try:
            await clock.run_for(1)
            manager.pause_all()
            manager.unregister("t")
        finally:
            await manager.shutdown()

        assert [1.0] == calls
