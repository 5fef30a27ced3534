"""CheckResult and the HealthCheck protocol every probe implements.

A check is one probe with one overall deadline. Scheduling, thresholds and
healing live elsewhere; they only ever see a CheckResult, never an
exception, so a broken probe cannot break the loop that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from selfhealing.clock import utc_iso


__all__ = ["CheckResult", "HealthCheck"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One probe's verdict.

    *latency* is seconds from the start of the probe to the verdict, on the
    check's monotonic clock; *at* is the wall epoch when the probe started.
    """

    ok: bool
    latency: float
    detail: str
    at: float

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "ok": self.ok,
            "latencyMs": round(self.latency * 1000, 3),
            "detail": self.detail,
            "at": utc_iso(self.at),
        }


@runtime_checkable
class HealthCheck(Protocol):
    """One probe: ``await check()`` returns a verdict within *timeout*.

    ``check()`` never raises except ``asyncio.CancelledError``; every other
    failure is an ``ok=False`` result with a short detail. ``aclose()``
    releases what the check holds (connections, sessions).
    """

    @property
    def kind(self) -> str:
        """The check type: ``"http"``, ``"tcp"``, ``"process"``, ..."""

    @property
    def timeout(self) -> float:
        """The overall deadline of one probe, in seconds."""

    async def check(self) -> CheckResult:
        """Run one probe and return its verdict."""

    async def aclose(self) -> None:
        """Release what the check holds (connections, sessions, threads)."""
