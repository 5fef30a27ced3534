"""BackgroundTaskManager: named interval tasks, never duplicated.

The guide's outages came from ``setInterval``s registered again on every
reload until the host drowned in duplicate checks. Here one id is one task:
registering an id again replaces the old task. Each task runs on a fixed
tick grid on the injected clock; a tick that finds the previous run still
going is skipped and counted, so runs never overlap and a slow run or a
stalled loop never ends in a burst of catch-up runs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from selfhealing.clock import Clock, seconds, system_clock, utc_iso
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import ConfigError, UnknownNameError


__all__ = [
    "BackgroundTaskManager",
    "TaskManagerSnapshot",
    "TaskSnapshot",
    "TaskState",
]

_log = logging.getLogger("selfhealing.tasks")

_COMPONENT = "BackgroundTaskManager"
_MAX_ERROR_LENGTH = 300
# Enough recent samples for a percentile, bounded so memory stays flat.
LATENESS_SAMPLES = 256


class TaskState(StrEnum):
    """What a registered task is doing now."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class TaskSnapshot:
    """One task's counters. Times are wall epochs, durations seconds."""

    id: str
    interval: float
    state: TaskState
    runs: int
    failures: int
    skipped: int
    last_run_at: float | None
    last_duration: float | None
    last_error: str | None
    next_run_at: float | None
    kind: str = "task"

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        duration = self.last_duration
        return {
            "id": self.id,
            "interval": self.interval,
            "state": str(self.state),
            "runs": self.runs,
            "failures": self.failures,
            "skipped": self.skipped,
            "lastRunAt": utc_iso(self.last_run_at),
            "lastDurationMs": None if duration is None else duration * 1000,
            "lastError": self.last_error,
            "nextRunAt": utc_iso(self.next_run_at),
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class TaskManagerSnapshot:
    """Every task at one moment; *active_tasks* counts those not paused."""

    total_tasks: int
    active_tasks: int
    tasks: tuple[TaskSnapshot, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "totalTasks": self.total_tasks,
            "activeTasks": self.active_tasks,
            "tasks": [task.to_dict() for task in self.tasks],
        }


@dataclass(slots=True, eq=False)
class _Task:
    """A registration and its live counters (mutated on the loop only)."""

    id: str
    fn: Callable[[], object]
    is_async: bool
    interval: float
    initial_delay: float
    kind: str = "task"
    paused: bool = False
    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last_run_at: float | None = None
    last_duration: float | None = None
    last_error: str | None = None
    next_due: float | None = None
    scheduler: asyncio.Task[None] | None = None
    run: asyncio.Task[None] | None = None
    lateness: deque[float] = field(
        default_factory=lambda: deque(maxlen=LATENESS_SAMPLES)
    )

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.done()

    def snapshot(self, now: float, wall: float) -> TaskSnapshot:
        if self.paused:
            state, next_run_at = TaskState.PAUSED, None
        else:
            state = TaskState.RUNNING if self.running else TaskState.SCHEDULED
            due = self.next_due
            next_run_at = None if due is None else wall + max(due - now, 0.0)
        return TaskSnapshot(
            self.id,
            self.interval,
            state,
            self.runs,
            self.failures,
            self.skipped,
            self.last_run_at,
            self.last_duration,
            self.last_error,
            next_run_at,
            self.kind,
        )


class BackgroundTaskManager:
    """Run named callables every *interval* seconds on the injected clock.

    Registration, pause and resume work from any thread, before or after
    :meth:`start`; anything that touches asyncio tasks is handed to the
    loop's thread. The lock guards the registry only and is never held
    while a task's callable runs.
    """

    def __init__(
        self, *, clock: Clock = system_clock, bus: EventBus | None = None
    ) -> None:
        self._clock = clock
        self._bus = bus
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Strong references to schedulers and runs, so none is collected
        # mid-flight and shutdown can await every one of them.
        self._live: set[asyncio.Task[None]] = set()

    def register_interval(
        self,
        task_id: str,
        fn: Callable[[], object],
        interval: float | timedelta,
        *,
        initial_delay: float | timedelta | None = None,
        kind: str = "task",
    ) -> None:
        """Run *fn* every *interval*, first after *initial_delay*.

        *initial_delay* defaults to *interval*, like ``setInterval``; 0 runs
        at once. An existing *task_id* is replaced, never duplicated.
        *kind* tells the daemon's own tasks (``"check"``) from yours.
        """
        if not isinstance(task_id, str) or not task_id.strip():
            raise ConfigError(
                f"must be a non-empty string, got {task_id!r}", where="task_id"
            )
        if not callable(fn):
            raise ConfigError(f"must be callable, got {fn!r}", where="fn")
        every = _duration(interval, "interval", allow_zero=False)
        delay = (
            every
            if initial_delay is None
            else _duration(initial_delay, "initial_delay", allow_zero=True)
        )
        entry = _Task(task_id, fn, _is_async(fn), every, delay, kind)
        with self._lock:
            old = self._tasks.get(task_id)
            self._tasks[task_id] = entry
        self._on_loop(self._swap, old, entry)
        verb = "replaced" if old is not None else "registered"
        _log.info("%s task %s every %ss", verb, task_id, every)
        message = f"{verb} task {task_id} every {every}s"
        self._publish(
            EventKind.TASK_REGISTERED,
            task_id,
            message,
            interval=every,
            replaced=old is not None,
        )

    def unregister(self, task_id: str) -> None:
        """Cancel *task_id* (and a run in progress) and forget it."""
        with self._lock:
            entry = self._get(task_id)
            del self._tasks[task_id]
        self._forget([entry])

    def cleanup(self) -> int:
        """Cancel and forget every task; return how many there were."""
        with self._lock:
            entries = list(self._tasks.values())
            self._tasks.clear()
        self._forget(entries)
        return len(entries)

    def pause(self, task_id: str) -> None:
        """Stop running *task_id* until resumed; a run in progress finishes."""
        self._set_paused(task_id, paused=True)

    def resume(self, task_id: str) -> None:
        """Run *task_id* again from its next tick (no catch-up runs)."""
        self._set_paused(task_id, paused=False)

    def pause_all(self) -> int:
        """Pause every task; return how many were not paused yet."""
        return self._set_paused(None, paused=True)

    def resume_all(self) -> int:
        """Resume every task; return how many were paused."""
        return self._set_paused(None, paused=False)

    def snapshot(self) -> TaskManagerSnapshot:
        """Counters of every task, in registration order."""
        with self._lock:
            entries = list(self._tasks.values())
        now, wall = self._clock.monotonic(), self._clock.time()
        tasks = tuple(entry.snapshot(now, wall) for entry in entries)
        active = sum(task.state is not TaskState.PAUSED for task in tasks)
        return TaskManagerSnapshot(len(tasks), active, tasks)

    def lateness(self, task_id: str) -> tuple[float, ...]:
        """Recent lateness samples (actual start minus due time), oldest first."""
        with self._lock:
            return tuple(self._get(task_id).lateness)

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return isinstance(task_id, str) and task_id in self._tasks

    def __repr__(self) -> str:
        started = self._loop is not None
        return f"BackgroundTaskManager(tasks={len(self)}, started={started})"

    async def start(self) -> None:
        """Bind to the running loop and start every registered task."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is loop:
                return
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    "BackgroundTaskManager is already started on another "
                    "event loop; call shutdown() there first"
                )
            self._loop = loop
            self._loop_thread = threading.get_ident()
            entries = list(self._tasks.values())
            for entry in entries:
                # Stale when the last loop closed without shutdown().
                entry.scheduler = entry.run = None
        self._live.clear()
        for entry in entries:
            self._spawn(entry)
        _log.info("started with %d tasks", len(entries))

    async def shutdown(self) -> None:
        """Cancel every scheduler and run and wait for them to end.

        Tasks stay registered, so a later :meth:`start` runs them again. A
        sync callable already in its worker thread cannot be interrupted;
        its result is simply dropped.
        """
        with self._lock:
            self._loop = None
            self._loop_thread = None
            for entry in self._tasks.values():
                entry.scheduler = None
                entry.next_due = None
        live = list(self._live)
        for task in live:
            task.cancel()
        await asyncio.gather(*live, return_exceptions=True)
        _log.info("shut down, %d schedulers and runs cancelled", len(live))

    def _get(self, task_id: str) -> _Task:
        entry = self._tasks.get(task_id)
        if entry is None:
            raise UnknownNameError("task", task_id, list(self._tasks))
        return entry

    def _forget(self, entries: list[_Task]) -> None:
        for entry in entries:
            self._on_loop(_stop, entry)
            _log.info("unregistered task %s", entry.id)
            message = f"unregistered task {entry.id}"
            self._publish(EventKind.TASK_UNREGISTERED, entry.id, message)

    def _set_paused(self, task_id: str | None, *, paused: bool) -> int:
        # A paused task keeps ticking without running, so resuming lands on
        # its grid with no burst and needs no wake-up across threads.
        with self._lock:
            if task_id is None:
                entries = list(self._tasks.values())
            else:
                entries = [self._get(task_id)]
            changed = [e for e in entries if e.paused is not paused]
            for entry in changed:
                entry.paused = paused
        verb = "paused" if paused else "resumed"
        kind = EventKind.TASK_PAUSED if paused else EventKind.TASK_RESUMED
        for entry in changed:
            _log.info("%s task %s", verb, entry.id)
            self._publish(kind, entry.id, f"{verb} task {entry.id}")
        return len(changed)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Call *fn* on the loop's thread, or not at all when not started."""
        loop = self._loop
        if loop is None:
            return
        if loop.is_closed():
            # The loop went away without shutdown(): behave as not started.
            with self._lock:
                if self._loop is loop:
                    self._loop = None
            return
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _swap(self, old: _Task | None, new: _Task) -> None:
        if old is not None and old.scheduler is not None:
            # The old run in progress may finish; it only updates *old*.
            old.scheduler.cancel()
        self._spawn(new)

    def _spawn(self, entry: _Task) -> None:
        # Callbacks from other threads may arrive after a later replace,
        # unregister or shutdown; only the current entry gets a scheduler.
        with self._lock:
            if (
                self._loop is None
                or entry.scheduler is not None
                or self._tasks.get(entry.id) is not entry
            ):
                return
            origin = self._clock.monotonic() + entry.initial_delay
            entry.next_due = origin
            entry.scheduler = self._loop.create_task(
                self._schedule(entry, origin), name=f"task:{entry.id}"
            )
        self._track(entry.scheduler)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._live.add(task)
        task.add_done_callback(self._live.discard)

    async def _schedule(self, entry: _Task, origin: float) -> None:
        clock, interval = self._clock, entry.interval
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            due = origin + tick * interval
            entry.next_due = due
            # Always await, even when late, so a tiny interval cannot
            # starve the loop.
            await clock.sleep(max(due - clock.monotonic(), 0.0))
            now = clock.monotonic()
            # Woken several ticks late (a long stall): run once, for the
            # latest tick, and count the ones in between as skipped.
            missed = max(math.floor((now - due) / interval), 0)
            tick += missed + 1
            if entry.paused:
                continue
            if missed:
                entry.skipped += missed
                due = origin + (tick - 1) * interval
                _log.debug("task %s skipped %d missed ticks", entry.id, missed)
            if entry.running:
                entry.skipped += 1
                _log.debug("task %s still running, tick skipped", entry.id)
                continue
            entry.lateness.append(now - due)
            entry.run = loop.create_task(self._run(entry))
            self._track(entry.run)

    async def _run(self, entry: _Task) -> None:
        clock = self._clock
        started = clock.monotonic()
        entry.runs += 1
        entry.last_run_at = clock.time()
        try:
            if entry.is_async:
                result = entry.fn()
            else:
                result = await asyncio.to_thread(entry.fn)
            # Also covers sync callables that return a coroutine.
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            entry.failures += 1
            error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_LENGTH]
            entry.last_error = error
            _log.warning("task %s failed: %s", entry.id, error)
        finally:
            entry.last_duration = clock.monotonic() - started

    def _publish(
        self, kind: EventKind, task_id: str, message: str, **data: object
    ) -> None:
        if self._bus is not None:
            at = self._clock.time()
            event = Event(kind, at, _COMPONENT, message, task_id, data=data)
            self._bus.publish(event)


def _stop(entry: _Task) -> None:
    for task in (entry.scheduler, entry.run):
        if task is not None:
            task.cancel()
    entry.scheduler = None
    entry.next_due = None


def _is_async(fn: Callable[[], object]) -> bool:
    # Objects with an ``async def __call__`` count as coroutine functions.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        type(fn).__call__
    )


def _duration(
    value: float | timedelta, name: str, *, allow_zero: bool
) -> float:
    result = seconds(value, name=name)
    bound = ">= 0" if allow_zero else "> 0"
    too_small = result < 0 if allow_zero else result <= 0
    if too_small or not math.isfinite(result):
        raise ConfigError(
            f"must be a finite number of seconds {bound}, got {value!r}",
            where=name,
        )
    return result
