"""CallableCheck: library mode, where the health check is your own code.

A sync function runs in a worker thread so it cannot stall the loop; an
async one is awaited. Either returns a bool or a CheckResult. Whatever it
raises becomes the detail, so a bug in a check reads as a failed check.
"""

from __future__ import annotations

import inspect

from collections.abc import Callable
from datetime import timedelta

from selfhealing.checks._probe import (
    ProbeBusyError,
    check_timeout,
    exception_line,
    one_line,
    run_probe,
)
from selfhealing.checks._result import CheckResult
from selfhealing.checks._thread import ThreadSlot
from selfhealing.clock import Clock, system_clock
from selfhealing.exceptions import ConfigError


__all__ = ["CallableCheck"]


class CallableCheck:
    """Ok when *fn* returns True (or an ok CheckResult) within *timeout*.

    A returned CheckResult lends its ``ok`` and ``detail``; latency and
    start time are always measured here, on this check's clock. A sync
    *fn* still running after the deadline keeps its thread, and later
    probes fail at once until it returns (threads cannot be cancelled).
    """

    kind = "callable"

    __slots__ = ("_clock", "_fn", "_is_async", "_slot", "name", "timeout")

    def __init__(
        self,
        fn: Callable[[], object],
        *,
        timeout: float | timedelta = 5.0,
        name: str | None = None,
        clock: Clock = system_clock,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"must be callable, got {fn!r}", where="fn")
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(
                f"must be a non-empty string, got {name!r}", where="name"
            )
        self._fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)
        self.name = name or getattr(fn, "__qualname__", None) or repr(fn)
        self.timeout = check_timeout(timeout)
        self._clock = clock
        self._slot = ThreadSlot(clock)

    async def check(self) -> CheckResult:
        return await run_probe(
            self._probe,
            within=self.timeout,
            clock=self._clock,
            describe=_describe,
        )

    async def aclose(self) -> None:
        """Nothing to release."""

    async def _probe(self) -> tuple[bool, str]:
        if self._is_async:
            outcome = self._fn()
        else:
            outcome = await self._slot.run(self._fn)
        # Also covers a sync callable that hands back an awaitable, such
        # as a lambda around an async function.
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, CheckResult):
            return outcome.ok, outcome.detail
        if outcome is True:
            return True, "ok"
        if outcome is False:
            return False, "returned False"
        return False, one_line(
            f"returned {outcome!r}, expected a bool or a CheckResult"
        )

    def __repr__(self) -> str:
        return f"CallableCheck({self.name!r})"


def _describe(exc: BaseException) -> str:
    # The user's own exceptions keep their type name: it is their code.
    if isinstance(exc, ProbeBusyError):
        return str(exc)
    return exception_line(exc)
