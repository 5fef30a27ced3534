"""SelfHealingEngine: one governor for every healing attempt.

An attempt runs only if automatic healing is enabled, the engine is not
dormant, the backoff window since the last failure has passed, the target is
not already being healed, and the ``self-healing-main`` breaker admits it.
Each decision, including every skip and why, is published on the event bus.

Dormant mode is entered after ``max_consecutive_failures`` failed attempts
in a row, or when the main breaker goes PERMANENT_OPEN. Dormant means no
attempt at all until a human calls ``resume_from_dormant(reason)``.
"""

from __future__ import annotations

import logging

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from selfhealing.backoff import Backoff
from selfhealing.breaker import BreakerState, CircuitBreaker, Permit
from selfhealing.clock import Clock, system_clock, utc_iso
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    CircuitOpenError,
    ConfigError,
    validate_reason,
)
from selfhealing.registry import CircuitBreakerRegistry


__all__ = [
    "MAIN_BREAKER",
    "TARGET_BREAKER_PREFIX",
    "AttemptOutcome",
    "AttemptResult",
    "EngineMode",
    "EngineSnapshot",
    "SelfHealingEngine",
    "SkipReason",
]

_log = logging.getLogger("selfhealing.engine")

MAIN_BREAKER = "self-healing-main"
TARGET_BREAKER_PREFIX = "target:"
_COMPONENT = "SelfHealing"


class EngineMode(StrEnum):
    """ACTIVE heals; DORMANT only watches, until a human resumes it."""

    ACTIVE = "active"
    DORMANT = "dormant"


class AttemptOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class SkipReason(StrEnum):
    """Why the engine did not attempt: each is audited."""

    DISABLED = "disabled"  # FEATURE_AUTO_HEALING_ENABLED=false
    DORMANT = "dormant"
    BACKOFF = "backoff"
    BREAKER_OPEN = "breaker_open"
    IN_PROGRESS = "in_progress"  # this target is being healed already
    TARGET_BREAKER_OPEN = "target_breaker_open"  # target:<name> is open


class AutoHealingSwitch(Protocol):
    """What the engine reads from the feature flags."""

    @property
    def auto_healing(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What became of one request to heal a target."""

    target: str
    outcome: AttemptOutcome
    skip_reason: SkipReason | None = None
    retry_after: float | None = None  # seconds, for skips that end
    duration: float = 0.0
    error: str | None = None

    @property
    def attempted(self) -> bool:
        return self.outcome is not AttemptOutcome.SKIPPED


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """The engine at one moment: the status API's ``selfHealing``."""

    enabled: bool
    mode: EngineMode
    dormant_reason: str | None
    dormant_since: float | None
    consecutive_failures: int
    backoff_delay: float
    next_attempt_at: float | None
    total_attempts: int
    successful_healings: int
    failed_healings: int
    relapses: int
    max_consecutive_failures: int
    in_progress: tuple[str, ...]
    last_resume: dict[str, Any] | None

    @property
    def is_dormant(self) -> bool:
        return self.mode is EngineMode.DORMANT

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "mode": str(self.mode),
            "isDormant": self.is_dormant,
            "dormantReason": self.dormant_reason,
            "dormantSince": utc_iso(self.dormant_since),
            "consecutiveFailures": self.consecutive_failures,
            "maxConsecutiveFailures": self.max_consecutive_failures,
            "backoffDelay": round(self.backoff_delay * 1000),
            "nextAttemptAt": utc_iso(self.next_attempt_at),
            "totalAttempts": self.total_attempts,
            "successfulHealings": self.successful_healings,
            "failedHealings": self.failed_healings,
            "relapses": self.relapses,
            "inProgress": list(self.in_progress),
            "lastResume": self.last_resume,
        }


class SelfHealingEngine:
    """Governs healing attempts; see the module docstring."""

    def __init__(
        self,
        *,
        registry: CircuitBreakerRegistry | None = None,
        flags: AutoHealingSwitch | None = None,
        backoff: Backoff | None = None,
        max_consecutive_failures: int = 10,
        clock: Clock = system_clock,
        bus: EventBus | None = None,
    ) -> None:
        if (
            isinstance(max_consecutive_failures, bool)
            or not isinstance(max_consecutive_failures, int)
            or max_consecutive_failures < 1
        ):
            raise ConfigError(
                f"must be an integer >= 1, got {max_consecutive_failures!r}",
                where="max_consecutive_failures",
            )
        self._clock = clock
        self._bus = bus if bus is not None else EventBus()
        self._registry = (
            registry
            if registry is not None
            else CircuitBreakerRegistry(clock=clock, bus=self._bus)
        )
        self._flags = flags
        self._backoff = backoff if backoff is not None else Backoff()
        self._max_failures = max_consecutive_failures
        self._mode = EngineMode.ACTIVE
        self._dormant_reason: str | None = None
        self._dormant_since: float | None = None
        self._consecutive_failures = 0
        self._not_before = 0.0  # monotonic: last failure + backoff delay
        self._total = 0
        self._succeeded = 0
        self._failed = 0
        self._relapses = 0
        # The failure streak each target's last success reset: a relapse
        # takes the success back, so the streak goes on from there.
        self._streak_at_success: dict[str, int] = {}
        self._in_progress: set[str] = set()
        self._last_resume: dict[str, Any] | None = None

    # ------------------------------------------------------------ attempts

    @property
    def main_breaker(self) -> CircuitBreaker:
        return self._registry.get_or_create(MAIN_BREAKER)

    @property
    def bus(self) -> EventBus:
        return self._bus

    @property
    def registry(self) -> CircuitBreakerRegistry:
        return self._registry

    @property
    def enabled(self) -> bool:
        return self._flags is None or self._flags.auto_healing

    async def attempt(
        self,
        target: str,
        heal: Callable[[], Awaitable[bool]],
        *,
        breaker: CircuitBreaker | None = None,
        details: dict[str, Any] | None = None,
    ) -> AttemptResult:
        """Try to heal *target* with *heal*, if governance allows it now.

        *heal* runs the remediation and returns True only when the target
        was verified healthy afterwards; False or an exception is a failed
        attempt. The attempt goes through the ``self-healing-main`` breaker
        and, when given, the target's own *breaker*; a call either breaker
        rejects is not an attempt and is not counted.
        """
        skip = self.gate(target, breaker=breaker)
        permits: list[Permit] = []
        if skip is None:
            skip = self._acquire(permits, breaker)
        if skip is not None:
            return self._skipped(target, *skip, details)
        self._in_progress.add(target)
        started = self._clock.monotonic()
        self._total += 1
        self._publish(
            EventKind.HEALING_ATTEMPTED,
            f"healing attempt #{self._total} on {target}",
            target=target,
            data={"attempt": self._total, **(details or {})},
        )
        error: str | None = None
        try:
            if not await heal():
                error = "still unhealthy after healing"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        except BaseException:
            for permit in permits:
                permit.cancel()
            raise
        finally:
            self._in_progress.discard(target)
        for permit in permits:
            if error is None:
                permit.success()
            else:
                permit.failure()
        if error is None:
            return self._succeeded_attempt(target, started, details)
        return self._failed_attempt(target, started, error, details)

    def _acquire(
        self, permits: list[Permit], breaker: CircuitBreaker | None
    ) -> tuple[SkipReason, float | None] | None:
        """Get a permit from each breaker, or give back what was got."""
        try:
            permits.append(self.main_breaker.acquire())
        except CircuitOpenError as exc:
            return SkipReason.BREAKER_OPEN, exc.retry_after
        if breaker is not None:
            try:
                permits.append(breaker.acquire())
            except CircuitOpenError as exc:
                permits.pop().cancel()
                return SkipReason.TARGET_BREAKER_OPEN, exc.retry_after
        return None

    def gate(
        self, target: str, *, breaker: CircuitBreaker | None = None
    ) -> tuple[SkipReason, float | None] | None:
        """Why an attempt on *target* would be skipped now (and for how
        long, when that is known), or None if it would run.

        Deciding only: nothing is published, so a watcher may ask on every
        probe and call :meth:`attempt` once per streak of skips.
        """
        if not self.enabled:
            return SkipReason.DISABLED, None
        if self._mode is EngineMode.ACTIVE and (
            self.main_breaker.state is BreakerState.PERMANENT_OPEN
        ):
            self._enter_dormant(
                f"Circuit breaker {MAIN_BREAKER} is PERMANENT_OPEN"
            )
        if self._mode is EngineMode.DORMANT:
            return SkipReason.DORMANT, None
        wait = self._not_before - self._clock.monotonic()
        if wait > 0:
            return SkipReason.BACKOFF, wait
        if target in self._in_progress:
            return SkipReason.IN_PROGRESS, None
        return self._breaker_gate(breaker)

    def _breaker_gate(
        self, breaker: CircuitBreaker | None
    ) -> tuple[SkipReason, float | None] | None:
        for reason, gatekeeper in (
            (SkipReason.BREAKER_OPEN, self.main_breaker),
            (SkipReason.TARGET_BREAKER_OPEN, breaker),
        ):
            if gatekeeper is None:
                continue
            wait = gatekeeper.retry_after()
            if wait is None or wait > 0:
                return reason, wait
        return None

    def _skipped(
        self,
        target: str,
        reason: SkipReason,
        retry_after: float | None,
        details: dict[str, Any] | None,
    ) -> AttemptResult:
        _log.debug("skipped healing of %s: %s", target, reason)
        self._publish(
            EventKind.HEALING_SKIPPED,
            f"healing of {target} skipped: {reason}",
            target=target,
            reason=str(reason),
            data={"retryAfter": retry_after, **(details or {})},
        )
        return AttemptResult(
            target, AttemptOutcome.SKIPPED, reason, retry_after
        )

    def _succeeded_attempt(
        self, target: str, started: float, details: dict[str, Any] | None
    ) -> AttemptResult:
        duration = self._clock.monotonic() - started
        self._succeeded += 1
        self._streak_at_success[target] = self._consecutive_failures
        self._consecutive_failures = 0
        self._not_before = 0.0
        _log.info("healed %s in %.3fs", target, duration)
        self._publish(
            EventKind.HEALING_SUCCEEDED,
            f"{target} healed and verified",
            target=target,
            data={"durationMs": round(duration * 1000), **(details or {})},
        )
        return AttemptResult(
            target, AttemptOutcome.SUCCEEDED, duration=duration
        )

    def _failed_attempt(
        self,
        target: str,
        started: float,
        error: str,
        details: dict[str, Any] | None,
    ) -> AttemptResult:
        now = self._clock.monotonic()
        self._failed += 1
        self._consecutive_failures += 1
        failures = self._consecutive_failures
        delay = self._backoff.delay(failures)
        self._not_before = now + delay
        _log.warning(
            "healing of %s failed (%d consecutive): %s; next attempt in %.0fs",
            target,
            failures,
            error,
            delay,
        )
        self._publish(
            EventKind.HEALING_FAILED,
            f"healing of {target} failed: {error}",
            target=target,
            data={
                "error": error,
                "consecutiveFailures": failures,
                "backoffDelay": round(delay * 1000),
                "durationMs": round((now - started) * 1000),
                **(details or {}),
            },
        )
        if failures >= self._max_failures:
            self._enter_dormant(
                f"Exceeded maximum consecutive failures ({self._max_failures})"
            )
        elif self.main_breaker.state is BreakerState.PERMANENT_OPEN:
            self._enter_dormant(
                f"Circuit breaker {MAIN_BREAKER} is PERMANENT_OPEN"
            )
        return AttemptResult(
            target,
            AttemptOutcome.FAILED,
            duration=now - started,
            error=error,
            retry_after=delay,
        )

    def relapse(self, target: str, *, after: float) -> None:
        """*target* was healed and verified but failed again *after*
        seconds, inside its relapse window: the healing did not hold.

        Counts in the failure streak (backoff and dormant mode apply), so
        a crash loop ends in dormant mode instead of a restart storm.
        """
        now = self._clock.monotonic()
        self._relapses += 1
        self._consecutive_failures = (
            max(
                self._consecutive_failures,
                self._streak_at_success.pop(target, 0),
            )
            + 1
        )
        failures = self._consecutive_failures
        delay = self._backoff.delay(failures)
        self._not_before = max(self._not_before, now + delay)
        _log.warning(
            "healing of %s did not hold: unhealthy again %.1fs after it "
            "was verified (%d consecutive failures)",
            target,
            after,
            failures,
        )
        self._publish(
            EventKind.HEALING_RELAPSED,
            f"healing of {target} did not hold: unhealthy again "
            f"{after:.1f}s after verification",
            target=target,
            data={
                "afterSeconds": round(after, 3),
                "consecutiveFailures": failures,
                "backoffDelay": round(delay * 1000),
            },
        )
        if failures >= self._max_failures:
            self._enter_dormant(
                f"Exceeded maximum consecutive failures ({self._max_failures})"
            )

    # ------------------------------------------------------- dormant mode

    @property
    def mode(self) -> EngineMode:
        return self._mode

    @property
    def is_dormant(self) -> bool:
        return self._mode is EngineMode.DORMANT

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    @property
    def backoff_delay(self) -> float:
        """Seconds the engine waits after the current failure streak."""
        return self._backoff.delay(self._consecutive_failures)

    def retry_after(self) -> float | None:
        """Seconds until an attempt may start: None while dormant."""
        if self._mode is EngineMode.DORMANT:
            return None
        breaker_wait = self.main_breaker.retry_after()
        if breaker_wait is None:
            return None
        backoff_wait = self._not_before - self._clock.monotonic()
        return max(0.0, backoff_wait, breaker_wait)

    def enter_dormant(self, reason: str, *, actor: str | None = None) -> bool:
        """Stop all healing until resumed; False if already dormant."""
        return self._enter_dormant(validate_reason(reason), actor=actor)

    def _enter_dormant(self, reason: str, *, actor: str | None = None) -> bool:
        if self._mode is EngineMode.DORMANT:
            return False
        self._mode = EngineMode.DORMANT
        self._dormant_reason = reason
        self._dormant_since = self._clock.time()
        _log.error(
            "entering DORMANT mode: %s. No healing until an operator "
            "resumes: POST /api/system/heal/resume with a reason",
            reason,
        )
        self._publish(
            EventKind.DORMANT_ENTERED,
            f"Self-Healing Engine entered DORMANT mode: {reason}",
            reason=reason,
            actor=actor,
            data={"consecutiveFailures": self._consecutive_failures},
        )
        return True

    def resume_from_dormant(
        self, reason: str, actor: str | None = None
    ) -> bool:
        """Leave dormant mode: the guide's ``resumeFromDormant(reason)``.

        A reason is required (1-500 characters). Resets the failure streak
        and backoff and force-resets the main breaker, and every target
        breaker that is not closed, to CLOSED. Returns
        False, changing nothing, when the engine is not dormant.
        """
        reason = validate_reason(reason)
        if self._mode is not EngineMode.DORMANT:
            _log.info(
                "resume requested by %s but the engine is not dormant",
                actor or "unknown",
            )
            return False
        previous = self._dormant_reason
        self._mode = EngineMode.ACTIVE
        self._dormant_reason = None
        self._dormant_since = None
        self._consecutive_failures = 0
        self._streak_at_success.clear()
        self._not_before = 0.0
        self.main_breaker.reset(force=True, reason=reason, actor=actor)
        # The targets' own breakers too: a resumed engine must be able to
        # heal every target, not only the ones whose breaker happens to be
        # closed.
        for breaker in self._registry:
            if breaker.name.startswith(TARGET_BREAKER_PREFIX) and (
                breaker.state is not BreakerState.CLOSED
            ):
                breaker.reset(force=True, reason=reason, actor=actor)
        self._last_resume = {
            "at": utc_iso(self._clock.time()),
            "actor": actor,
            "reason": reason,
            "previousReason": previous,
        }
        _log.warning(
            "resumed from DORMANT mode by %s: %s (was: %s)",
            actor or "unknown",
            reason,
            previous,
        )
        self._publish(
            EventKind.DORMANT_EXITED,
            f"Self-Healing Engine resumed: {reason}",
            reason=reason,
            actor=actor,
            data={"previousReason": previous},
        )
        return True

    # -------------------------------------------------------------- report

    def snapshot(self) -> EngineSnapshot:
        next_at = None
        wait = self.retry_after()
        if wait:
            next_at = self._clock.time() + wait
        return EngineSnapshot(
            enabled=self.enabled,
            mode=self._mode,
            dormant_reason=self._dormant_reason,
            dormant_since=self._dormant_since,
            consecutive_failures=self._consecutive_failures,
            backoff_delay=self.backoff_delay,
            next_attempt_at=next_at,
            total_attempts=self._total,
            successful_healings=self._succeeded,
            failed_healings=self._failed,
            relapses=self._relapses,
            max_consecutive_failures=self._max_failures,
            in_progress=tuple(sorted(self._in_progress)),
            last_resume=self._last_resume,
        )

    def _publish(
        self,
        kind: EventKind,
        message: str,
        *,
        target: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._bus.publish(
            Event(
                kind,
                self._clock.time(),
                _COMPONENT,
                message,
                target=target,
                actor=actor,
                reason=reason,
                data=data or {},
            )
        )
