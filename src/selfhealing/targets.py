"""Target: one watched thing, probed on a schedule and healed when it breaks.

Probes follow Kubernetes semantics: ``failure_threshold`` failures in a row
make the target unhealthy, ``success_threshold`` successes in a row make it
healthy again. An unhealthy target asks the engine for a healing attempt;
the attempt climbs the target's escalation ladder, one action at a time,
and after each action verifies the target with its own check until
``verify_timeout``. Only a verified target counts as healed.

A target that fails again within ``relapse_window`` of a verified healing
reports a relapse to the engine, so a service that comes up and falls over
again walks the backoff into dormant mode instead of a restart storm.
"""

from __future__ import annotations

import asyncio
import logging

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from selfhealing.actions import ActionResult, RemediationAction
from selfhealing.breaker import CircuitBreaker
from selfhealing.checks import CheckResult, HealthCheck
from selfhealing.clock import Clock, system_clock, utc_iso
from selfhealing.engine import AttemptResult, SelfHealingEngine, SkipReason
from selfhealing.events import Event, EventBus, EventKind


__all__ = ["CheckHook", "Target", "TargetHealth", "TargetSnapshot"]

_log = logging.getLogger("selfhealing.engine.targets")

_MIN_VERIFY_POLL = 0.05
_MAX_VERIFY_POLL = 1.0


class TargetHealth(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """A target at one moment (the status API's ``targets[]``)."""

    name: str
    health: TargetHealth
    detail: str | None
    last_check: CheckResult | None
    consecutive_failures: int
    consecutive_successes: int
    checks: int
    healing: bool
    detection_paused: bool
    last_healing: dict[str, Any] | None
    next_attempt_at: float | None
    breaker_state: str

    @property
    def healthy(self) -> bool | None:
        if self.health is TargetHealth.UNKNOWN:
            return None
        return self.health is TargetHealth.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        last = self.last_check
        return {
            "name": self.name,
            "health": str(self.health),
            "detail": self.detail,
            "lastCheck": None if last is None else last.to_dict(),
            "latencyMs": None
            if last is None
            else round(last.latency * 1000, 3),
            "consecutiveFailures": self.consecutive_failures,
            "consecutiveSuccesses": self.consecutive_successes,
            "checks": self.checks,
            "healing": self.healing,
            "detection": "paused" if self.detection_paused else "active",
            "lastHealing": self.last_healing,
            "nextAttemptAt": utc_iso(self.next_attempt_at),
            "breaker": self.breaker_state,
        }


CheckHook = Callable[["Target", CheckResult], object]
"""Called as ``hook(target, result)`` after every recorded check (probes
and verification), on the event loop thread."""


class Target:
    """See the module docstring."""

    def __init__(
        self,
        name: str,
        check: HealthCheck,
        ladder: Sequence[RemediationAction],
        *,
        engine: SelfHealingEngine,
        breaker: CircuitBreaker,
        interval: float,
        initial_delay: float = 0.0,
        failure_threshold: int = 3,
        success_threshold: int = 1,
        verify_timeout: float | None = None,
        verify_settle: float = 1.0,
        relapse_window: float | None = None,
        detection: Callable[[], bool] | None = None,
        clock: Clock = system_clock,
        bus: EventBus | None = None,
        recent: int = 20,
        on_check: CheckHook | None = None,
    ) -> None:
        self.name = name
        self.check = check
        self.ladder = tuple(ladder)
        self.engine = engine
        self.breaker = breaker
        self.interval = interval
        self.initial_delay = initial_delay
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.verify_timeout = (
            verify_timeout
            if verify_timeout is not None
            else interval * (failure_threshold + 2)
        )
        self.verify_settle = min(verify_settle, self.verify_timeout)
        self.relapse_window = (
            relapse_window if relapse_window is not None else 10 * interval
        )
        self._detection = detection
        self._clock = clock
        self._bus = bus if bus is not None else engine.bus
        self.health = TargetHealth.UNKNOWN
        self.detail: str | None = None
        self.recent: deque[CheckResult] = deque(maxlen=recent)
        self.actions: deque[ActionResult] = deque(maxlen=recent)
        self._climbed: list[ActionResult] = []  # the latest attempt's rungs
        self._failures = 0
        self._successes = 0
        self._checks = 0
        self._detection_paused = False
        self._healing: asyncio.Task[AttemptResult] | None = None
        self._last_skip: SkipReason | None = None
        self._last_healing: dict[str, Any] | None = None
        self._healed_at: float | None = None  # monotonic, last verification
        self.on_check = on_check

    # ------------------------------------------------------------- probing

    async def probe(self) -> CheckResult | None:
        """One scheduled probe (the background task's body)."""
        if self._detection is not None and not self._detection():
            self._detection_paused = True
            return None
        self._detection_paused = False
        result = await self.check.check()
        self._record(result)
        if self.health is TargetHealth.UNHEALTHY:
            self.request_healing()
        return result

    def _record(self, result: CheckResult) -> None:
        self._checks += 1
        self.recent.append(result)
        if result.ok:
            self._successes += 1
            self._failures = 0
            if self._successes >= self.success_threshold:
                self._set_health(TargetHealth.HEALTHY, None)
        else:
            self._failures += 1
            self._successes = 0
            if self._failures >= self.failure_threshold:
                self._set_health(TargetHealth.UNHEALTHY, result.detail)
        if self.on_check is not None:
            try:
                self.on_check(self, result)
            except Exception:
                # An observer (metrics) must never break a probe.
                _log.exception("target %s: on_check hook failed", self.name)

    def mark_unhealthy(self, detail: str) -> None:
        """Unhealthy now, without waiting for probes (a process crashed)."""
        self._failures = max(self._failures, self.failure_threshold)
        self._successes = 0
        self._set_health(TargetHealth.UNHEALTHY, detail)
        self.request_healing()

    def _set_health(self, health: TargetHealth, detail: str | None) -> None:
        previous = self.health
        self.detail = detail
        if health is previous:
            return
        self.health = health
        if health is TargetHealth.UNHEALTHY:
            _log.warning("target %s is unhealthy: %s", self.name, detail)
            self._publish(
                EventKind.TARGET_UNHEALTHY,
                f"{self.name} is unhealthy: {detail}",
                {"detail": detail, "previous": str(previous)},
            )
            self._note_relapse()
        elif previous is TargetHealth.UNHEALTHY:
            _log.info("target %s recovered", self.name)
            self._publish(
                EventKind.TARGET_RECOVERED, f"{self.name} is healthy again"
            )

    def _note_relapse(self) -> None:
        healed_at = self._healed_at
        if healed_at is None:
            return
        self._healed_at = None
        after = self._clock.monotonic() - healed_at
        if after <= self.relapse_window:
            self.engine.relapse(self.name, after=after)

    # ------------------------------------------------------------- healing

    @property
    def healing(self) -> bool:
        return self._healing is not None and not self._healing.done()

    def request_healing(self) -> asyncio.Task[AttemptResult] | None:
        """Ask the engine to heal this target, unless that is pointless now.

        Asks once per streak of skips for the same reason, so a dormant
        engine or a long backoff records one skip, not one per probe.
        """
        if self.healing or not self.ladder:
            return None
        skip = self.engine.gate(self.name, breaker=self.breaker)
        if skip is not None and skip[0] is self._last_skip:
            return None
        self._healing = asyncio.get_running_loop().create_task(
            self._attempt(), name=f"heal:{self.name}"
        )
        return self._healing

    async def heal_now(self) -> AttemptResult:
        """An operator's "heal now": one governed attempt, whatever the
        probes say (the engine's rules still apply)."""
        if self._healing is not None and not self._healing.done():
            return await self._healing
        self._last_skip = None
        self._healing = asyncio.get_running_loop().create_task(
            self._attempt(), name=f"heal:{self.name}"
        )
        return await self._healing

    async def _attempt(self) -> AttemptResult:
        result = await self.engine.attempt(
            self.name,
            self._climb_ladder,
            breaker=self.breaker,
            details={"ladder": [a.name for a in self.ladder]},
        )
        self._last_skip = result.skip_reason
        if result.attempted:
            self._last_healing = {
                "outcome": str(result.outcome),
                "at": utc_iso(self._clock.time()),
                "durationMs": round(result.duration * 1000),
                "error": result.error,
                "actions": [a.to_dict() for a in self._climbed],
            }
        return result

    async def _climb_ladder(self) -> bool:
        self._climbed = []
        for rung, action in enumerate(self.ladder, start=1):
            result = await action.run()
            self.actions.append(result)
            self._climbed.append(result)
            self._publish(
                EventKind.ACTION_RUN,
                f"{self.name}: {action.kind} {action.name} "
                f"{'ok' if result.ok else 'failed'}: {result.detail}",
                {"rung": rung, **result.to_dict()},
            )
            if await self._verify():
                self._healed_at = self._clock.monotonic()
                return True
            _log.warning(
                "target %s still unhealthy after %s (rung %d of %d)",
                self.name,
                action.name,
                rung,
                len(self.ladder),
            )
        return False

    async def _verify(self) -> bool:
        """Probe until *success_threshold* passes in a row, no sooner than
        *verify_settle* after the action and no later than *verify_timeout*."""
        clock = self._clock
        start = clock.monotonic()
        deadline = start + self.verify_timeout
        poll = min(max(self.interval / 2, _MIN_VERIFY_POLL), _MAX_VERIFY_POLL)
        passes = 0
        while True:
            result = await self.check.check()
            self._record(result)
            now = clock.monotonic()
            passes = passes + 1 if result.ok else 0
            settled = now - start >= self.verify_settle
            if passes >= self.success_threshold and settled:
                self._failures = 0
                self._successes = max(self._successes, self.success_threshold)
                self._set_health(TargetHealth.HEALTHY, None)
                return True
            if now >= deadline:
                return False
            await clock.sleep(min(poll, deadline - now))

    # -------------------------------------------------------------- report

    def snapshot(self) -> TargetSnapshot:
        wait = (
            self.engine.retry_after()
            if self.health is TargetHealth.UNHEALTHY
            else None
        )
        next_at = self._clock.time() + wait if wait else None
        return TargetSnapshot(
            name=self.name,
            health=self.health,
            detail=self.detail,
            last_check=self.recent[-1] if self.recent else None,
            consecutive_failures=self._failures,
            consecutive_successes=self._successes,
            checks=self._checks,
            healing=self.healing,
            detection_paused=self._detection_paused,
            last_healing=self._last_healing,
            next_attempt_at=next_at,
            breaker_state=str(self.breaker.state),
        )

    async def aclose(self) -> None:
        """Cancel a healing in progress and release the check."""
        healing = self._healing
        if healing is not None and not healing.done():
            healing.cancel()
            await asyncio.wait([healing])
        await self.check.aclose()

    def _publish(
        self, kind: EventKind, message: str, data: dict[str, Any] | None = None
    ) -> None:
        self._bus.publish(
            Event(
                kind,
                self._clock.time(),
                "SelfHealing",
                message,
                target=self.name,
                data=data or {},
            )
        )

    def __repr__(self) -> str:
        return f"<Target {self.name!r} {self.health}>"
