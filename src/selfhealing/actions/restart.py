"""RestartProcessAction: stop a supervised process (gracefully, then by
force) and start it again."""

from __future__ import annotations

from datetime import timedelta

from selfhealing.actions._base import ActionResult
from selfhealing.checks._probe import check_timeout, run_probe
from selfhealing.clock import Clock, system_clock
from selfhealing.supervisor import ManagedProcess


__all__ = ["RestartProcessAction"]


class RestartProcessAction:
    kind = "restart_process"

    __slots__ = ("_clock", "name", "process", "timeout")

    def __init__(
        self,
        name: str,
        process: ManagedProcess,
        *,
        timeout: float | timedelta = 30.0,
        clock: Clock = system_clock,
    ) -> None:
        self.name = name
        self.process = process
        self.timeout = check_timeout(timeout)
        self._clock = clock

    async def run(self) -> ActionResult:
        return ActionResult.of(
            self.name,
            await run_probe(
                self._restart, within=self.timeout, clock=self._clock
            ),
        )

    async def _restart(self) -> tuple[bool, str]:
        before = self.process.pid
        pid = await self.process.restart()
        was = f"pid {before}" if before is not None else "not running"
        return True, f"restarted {self.process.name}: {was} -> pid {pid}"

    def __repr__(self) -> str:
        return f"RestartProcessAction({self.name!r}, {self.process.name!r})"
