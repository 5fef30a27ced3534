"""Time, injected.

Every state machine in selfhealing takes a Clock, so tests drive time with
selfhealing.testing.FakeClock instead of sleeping. This module is the only
one that reads the system clock.
"""

from __future__ import annotations

import asyncio
import time

from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from selfhealing.exceptions import ConfigError


__all__ = ["Clock", "SystemClock", "seconds", "system_clock", "utc_iso"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic time for deadlines, wall time for display, and sleep."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""

    def time(self) -> float:
        """Seconds since the Unix epoch (wall time, for humans and logs)."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for *seconds*."""


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


system_clock = SystemClock()


def seconds(value: float | timedelta, *, name: str = "duration") -> float:
    """Convert a duration argument to seconds, once, at the edge."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"expected seconds or a timedelta, got {value!r}", where=name
        )
    return float(value)


def utc_iso(epoch: float | None) -> str | None:
    """Render an epoch timestamp as ISO 8601 UTC with milliseconds and Z."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
