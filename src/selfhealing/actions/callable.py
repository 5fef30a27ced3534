"""CallableAction: your own Python function as a rung (library mode)."""

from __future__ import annotations

import asyncio
import inspect

from collections.abc import Callable
from datetime import timedelta

from selfhealing.actions._base import ActionResult
from selfhealing.checks._probe import check_timeout, exception_line, run_probe
from selfhealing.clock import Clock, system_clock
from selfhealing.exceptions import ConfigError


__all__ = ["CallableAction"]


class CallableAction:
    """Runs *fn* (sync in a worker thread, or async). It succeeds unless it
    raises or returns False; a returned string becomes the detail."""

    kind = "callable"

    __slots__ = ("_clock", "fn", "name", "timeout")

    def __init__(
        self,
        name: str,
        fn: Callable[[], object],
        *,
        timeout: float | timedelta = 30.0,
        clock: Clock = system_clock,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"must be callable, got {fn!r}", where="fn")
        self.name = name
        self.fn = fn
        self.timeout = check_timeout(timeout)
        self._clock = clock

    async def run(self) -> ActionResult:
        return ActionResult.of(
            self.name,
            await run_probe(
                self._call,
                within=self.timeout,
                clock=self._clock,
                describe=exception_line,
            ),
        )

    async def _call(self) -> tuple[bool, str]:
        if inspect.iscoroutinefunction(self.fn):
            result = await self.fn()
        else:
            result = await asyncio.to_thread(self.fn)
            if inspect.isawaitable(result):
                result = await result
        if result is False:
            return False, "returned False"
        if isinstance(result, str):
            return True, result
        return True, "done"

    def __repr__(self) -> str:
        return f"CallableAction({self.name!r})"
