"""FakeClock: time that moves only when a test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools

from datetime import timedelta


__all__ = ["FakeClock"]

# 2026-01-01T00:00:00Z: a fixed, readable wall-clock origin for tests.
_WALL_ORIGIN = 1_767_225_600.0
_SETTLE_ROUNDS = 50


class FakeClock:
    """A Clock whose time moves only through advance() (or autojump).

    ``sleep()`` records each request in :attr:`sleeps`. In the default mode a
    sleeping task wakes once :meth:`advance` (or :meth:`run_for`) moves time
    past its deadline; with ``autojump=True`` every sleep jumps time forward
    by itself, like trio's autojump clock, so code under test never waits.
    """

    def __init__(
        self,
        start: float = 0.0,
        *,
        wall_start: float = _WALL_ORIGIN,
        autojump: bool = False,
    ) -> None:
        self._now = float(start)
        self._wall_offset = wall_start - self._now
        self.autojump = autojump
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        if self.autojump:
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        heapq.heappush(
            self._sleepers, (self._now + seconds, next(self._order), future)
        )
        await future

    def advance(self, seconds: float | timedelta) -> None:
        """Move time forward and wake every sleeper that is now due."""
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if seconds < 0:
            raise ValueError(
                f"time cannot go backwards: advance({seconds}) refused"
            )
        self._set(self._now + seconds)

    def _set(self, now: float) -> None:
        self._now = now
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.get_loop().call_soon_threadsafe(_wake, future)

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending sleep deadline, if any task is sleeping."""
        for deadline, _, future in sorted(self._sleepers):
            if not future.done():
                return deadline
        return None

    async def settle(self) -> None:
        """Yield to the event loop until woken tasks have run their step."""
        for _ in range(_SETTLE_ROUNDS):
            await asyncio.sleep(0)

    async def run_for(self, seconds: float | timedelta) -> None:
        """Advance by *seconds* deadline by deadline, letting tasks run.

        Each sleeper due within the span wakes at its own deadline and gets
        to run before time moves on, as it would on a real clock.
        """
        if isinstance(seconds, timedelta):
            seconds = seconds.total_seconds()
        if seconds < 0:
            raise ValueError(
                f"time cannot go backwards: run_for({seconds}) refused"
            )
        target = self._now + seconds
        while True:
            await self.settle()
            deadline = self.next_deadline
            if deadline is None or deadline > target:
                break
            self._set(max(deadline, self._now))
        self._set(target)
        await self.settle()

    def __repr__(self) -> str:
        return f"FakeClock(monotonic={self._now!r})"


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
