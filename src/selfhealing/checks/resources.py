"""DiskCheck and MemoryCheck: is there room left?

Both compare a used percentage with a ceiling. Disk figures come from
statvfs in a worker thread, because statvfs on a dead network mount can
block for minutes; memory figures come from /proc/meminfo, which never
blocks, so they are read on the loop.
"""

from __future__ import annotations

import math
import os

from datetime import timedelta
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from selfhealing.checks._probe import check_timeout, run_probe
from selfhealing.checks._result import CheckResult
from selfhealing.checks._thread import ThreadSlot
from selfhealing.clock import Clock, system_clock
from selfhealing.exceptions import ConfigError


__all__ = ["DiskCheck", "MemoryCheck"]

_FULL = 100.0


class DiskCheck:
    """Ok while the filesystem holding *path* is at most so full.

    *max_used_percent* limits space used, as ``df`` counts it (blocks
    reserved for root excluded); *max_inodes_percent*, when given, limits
    inodes used. Filesystems without an inode table (btrfs) skip it.
    """

    kind = "disk"

    __slots__ = (
        "_clock",
        "_slot",
        "max_inodes_percent",
        "max_used_percent",
        "path",
        "timeout",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_used_percent: float,
        max_inodes_percent: float | None = None,
        timeout: float | timedelta = 1.0,
        clock: Clock = system_clock,
    ) -> None:
        if not isinstance(path, str | os.PathLike) or not str(path):
            raise ConfigError(f"must be a path, got {path!r}", where="path")
        self.path = Path(path)
        self.max_used_percent = _percent(max_used_percent, "max_used_percent")
        self.max_inodes_percent = (
            None
            if max_inodes_percent is None
            else _percent(max_inodes_percent, "max_inodes_percent")
        )
        self.timeout = check_timeout(timeout)
        self._clock = clock
        self._slot = ThreadSlot(clock)

    async def check(self) -> CheckResult:
        return await run_probe(
            self._probe, within=self.timeout, clock=self._clock
        )

    async def aclose(self) -> None:
        """Nothing to release."""

    async def _probe(self) -> tuple[bool, str]:
        return await self._slot.run(self._measure)

    def _measure(self) -> tuple[bool, str]:
        usage = psutil.disk_usage(str(self.path))
        # psutil rounds its percent; a ceiling compares the exact figure.
        room = int(usage.used) + int(usage.free)
        used = int(usage.used) / room * 100 if room else 0.0
        ok = used <= self.max_used_percent
        detail = (
            f"disk {self.path} {used:.1f}% used "
            f"(max {self.max_used_percent:g}%)"
        )
        if self.max_inodes_percent is None:
            return ok, detail
        stats = os.statvfs(self.path)
        if stats.f_files == 0:
            return ok, f"{detail}, inodes not counted"
        inodes = (stats.f_files - stats.f_ffree) / stats.f_files * 100
        ok = ok and inodes <= self.max_inodes_percent
        return ok, (
            f"{detail}, inodes {inodes:.1f}% used "
            f"(max {self.max_inodes_percent:g}%)"
        )

    def __repr__(self) -> str:
        return f"DiskCheck({str(self.path)!r})"


class MemoryCheck:
    """Ok while at most *max_used_percent* of memory is in use.

    "Used" is psutil's figure: total minus what is available without
    swapping, so page cache does not count as used.
    """

    kind = "memory"

    __slots__ = ("_clock", "max_used_percent", "timeout")

    def __init__(
        self,
        *,
        max_used_percent: float,
        timeout: float | timedelta = 1.0,
        clock: Clock = system_clock,
    ) -> None:
        self.max_used_percent = _percent(max_used_percent, "max_used_percent")
        self.timeout = check_timeout(timeout)
        self._clock = clock

    async def check(self) -> CheckResult:
        return await run_probe(
            self._probe, within=self.timeout, clock=self._clock
        )

    async def aclose(self) -> None:
        """Nothing to release."""

    async def _probe(self) -> tuple[bool, str]:
        memory = psutil.virtual_memory()
        total = int(memory.total)
        used = (total - int(memory.available)) / total * 100 if total else 0.0
        return used <= self.max_used_percent, (
            f"memory {used:.1f}% used (max {self.max_used_percent:g}%)"
        )

    def __repr__(self) -> str:
        return f"MemoryCheck(max_used_percent={self.max_used_percent:g})"


def _percent(value: object, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= _FULL
        or math.isnan(value)
    ):
        raise ConfigError(
            f"must be a percentage 0-100, got {value!r}", where=where
        )
    return float(value)
