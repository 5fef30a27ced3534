"""CommandAction: run a program (argv, never a shell) and expect an exit code.

It runs exactly like a command check: its own session, one deadline, the
whole process group killed when it overruns, the output's tail kept for the
audit trail.
"""

from __future__ import annotations

import os

from collections.abc import Mapping, Sequence
from datetime import timedelta

from selfhealing.actions._base import ActionResult
from selfhealing.checks.command import CommandCheck
from selfhealing.clock import Clock, system_clock


__all__ = ["CommandAction"]


class CommandAction:
    kind = "command"

    __slots__ = ("_runner", "name")

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout: float | timedelta = 30.0,
        expected_exit_code: int = 0,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.name = name
        self._runner = CommandCheck(
            argv,
            timeout=timeout,
            expected_exit_code=expected_exit_code,
            cwd=cwd,
            env=env,
            clock=clock,
        )

    @property
    def timeout(self) -> float:
        return self._runner.timeout

    @property
    def argv(self) -> tuple[str, ...]:
        return self._runner.argv

    async def run(self) -> ActionResult:
        return ActionResult.of(self.name, await self._runner.check())

    def __repr__(self) -> str:
        return f"CommandAction({self.name!r}, {list(self.argv)!r})"
