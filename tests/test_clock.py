from __future__ import annotations

import asyncio

from datetime import timedelta

import pytest

from selfhealing.clock import Clock, SystemClock, seconds, utc_iso
from selfhealing.exceptions import ConfigError
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio


class TestFakeClock:
    async def test_is_a_clock(self, clock: FakeClock) -> None:
        """FakeClock and SystemClock both satisfy the Clock protocol."""
        assert isinstance(clock, Clock)
        assert isinstance(SystemClock(), Clock)

    async def test_advance_moves_both_clocks(self, clock: FakeClock) -> None:
        """advance() moves monotonic and wall time together."""
        wall = clock.time()
        clock.advance(timedelta(seconds=90))
        assert (90.0, wall + 90) == (clock.monotonic(), clock.time())

    async def test_refuses_to_go_backwards(self, clock: FakeClock) -> None:
        """A negative jump is refused, as trio's MockClock does."""
        with pytest.raises(ValueError, match="backwards"):
            clock.advance(-1)

    async def test_sleep_waits_for_advance(self, clock: FakeClock) -> None:
        """A sleeper wakes only once time passes its deadline."""
        woke: list[float] = []

        async def sleeper() -> None:
            await clock.sleep(10)
            woke.append(clock.monotonic())

        task = asyncio.create_task(sleeper())
        await clock.settle()
        clock.advance(9)
        await clock.settle()
        assert [] == woke
        clock.advance(1)
        await task
        assert [10.0] == woke
        assert [10] == clock.sleeps

    async def test_run_for_wakes_each_sleeper_at_its_deadline(
        self, clock: FakeClock
    ) -> None:
        """run_for lets a periodic task run once per period."""
        ticks: list[float] = []

        async def periodic() -> None:
            while True:
                await clock.sleep(1)
                ticks.append(clock.monotonic())

        task = asyncio.create_task(periodic())
        await clock.run_for(3.5)
        task.cancel()
        assert [1.0, 2.0, 3.0] == ticks
        assert 3.5 == clock.monotonic()

    async def test_autojump(self) -> None:
        """With autojump, sleeping moves time instead of waiting."""
        clock = FakeClock(autojump=True)
        await clock.sleep(3600)
        assert 3600.0 == clock.monotonic()


class TestHelpers:
    def test_seconds(self) -> None:
        """Durations come as numbers or timedeltas; nothing else."""
        assert 1.5 == seconds(timedelta(milliseconds=1500))
        assert 2.0 == seconds(2)
        with pytest.raises(ConfigError, match="'2s'"):
            seconds("2s")  # type: ignore[arg-type]

    def test_utc_iso(self) -> None:
        """Wall times render as ISO 8601 UTC with milliseconds and Z."""
        assert "2026-01-01T00:00:00.250Z" == utc_iso(1_767_225_600.25)
        assert utc_iso(None) is None
