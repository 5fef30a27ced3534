"""ActionResult and the RemediationAction protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from selfhealing.checks._result import CheckResult
from selfhealing.clock import utc_iso


__all__ = ["ActionResult", "RemediationAction"]


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What one run of an action did. *at* is wall time at its start."""

    action: str
    ok: bool
    detail: str
    duration: float
    at: float

    @classmethod
    def of(cls, action: str, probe: CheckResult) -> ActionResult:
        """The same verdict, as the shared probe runner reports it."""
        return cls(action, probe.ok, probe.detail, probe.latency, probe.at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "ok": self.ok,
            "detail": self.detail,
            "durationMs": round(self.duration * 1000, 3),
            "at": utc_iso(self.at),
        }


@runtime_checkable
class RemediationAction(Protocol):
    """One rung of an escalation ladder."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def timeout(self) -> float: ...

    async def run(self) -> ActionResult:
        """Do it, within ``timeout``; never raises but CancelledError."""
