"""ThreadSlot: blocking probe work in a worker thread, one call at a time.

A thread cannot be cancelled, so a call that outlives its probe's deadline
(statvfs on a dead NFS mount, a hung /proc read, a stuck user function)
keeps its thread. If every later probe started another one, the hung
threads would pile up in the default executor that the whole daemon
shares. A slot lets one call run per check; later probes fail fast with
ProbeBusyError until the stuck call returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools

from collections.abc import Callable
from typing import Any, TypeVar

from selfhealing.checks._probe import ProbeBusyError
from selfhealing.clock import Clock


__all__ = ["ThreadSlot"]

T = TypeVar("T")


class ThreadSlot:
    """Run a blocking callable in the loop's default executor, alone."""

    __slots__ = ("_busy_since", "_clock", "_future")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._future: asyncio.Future[Any] | None = None
        self._busy_since = 0.0

    @property
    def busy(self) -> bool:
        """Whether a call is still running in its thread."""
        return self._future is not None

    async def run(self, fn: Callable[[], T]) -> T:
        """Return ``fn()`` run in a worker thread.

        Raises ProbeBusyError while an earlier call is still running.
        Cancelling the caller leaves the call running to completion.
        """
        if self._future is not None:
            raise ProbeBusyError(self._clock.monotonic() - self._busy_since)
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn)
        future = loop.run_in_executor(None, call)
        self._future = future
        self._busy_since = self._clock.monotonic()
        future.add_done_callback(self._release)
        # The shield keeps the slot's future alive past a deadline, so the
        # slot frees itself only when the thread has really returned.
        return await asyncio.shield(future)

    def _release(self, future: asyncio.Future[Any]) -> None:
        if future is self._future:
            self._future = None
