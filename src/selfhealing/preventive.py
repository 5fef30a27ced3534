"""Preventive healing: act on a resource trend before it becomes a failure.

Every interval the rules of ``[[preventive]]`` read their series from the
ResourceMonitor. A rule that fires (and is not cooling down) submits its
action to the engine as a healing attempt like any other: the same flags,
dormant mode, backoff, breakers and audit trail, marked ``preventive``.
The attempt succeeds only when, after the action, the condition no longer
holds on fresh samples (a restarted process starts a new series).
"""

from __future__ import annotations

import asyncio
import logging

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from selfhealing.actions import RemediationAction
from selfhealing.breaker import CircuitBreaker
from selfhealing.clock import Clock, system_clock
from selfhealing.engine import AttemptResult, SelfHealingEngine
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.forecast import Decision, PreventiveRule, Trigger
from selfhealing.resources import ResourceMonitor


__all__ = ["PREVENTIVE_TASK", "PreventiveHealer"]

_log = logging.getLogger("selfhealing.preventive")

PREVENTIVE_TASK = "preventive.evaluate"
_VERIFY_POLL = 0.2
DEFAULT_VERIFY_TIMEOUT = 30.0


class PreventiveHealer:
    """Evaluates the rules and hands firing ones to the engine.

    *subject* maps a rule to the name its attempt is filed under (the
    target that watches the same process, so reactive and preventive
    healing of one thing never run at once), and *breaker* to that
    target's breaker, if any. *verify_timeouts* maps a rule's name to how
    long its condition may take to stop holding after the action.
    """

    def __init__(
        self,
        rules: Sequence[PreventiveRule],
        *,
        monitor: ResourceMonitor,
        engine: SelfHealingEngine,
        actions: Mapping[str, RemediationAction],
        enabled: Callable[[], bool],
        subject: Callable[[PreventiveRule], tuple[str, CircuitBreaker | None]],
        verify_timeouts: Mapping[str, float] | None = None,
        clock: Clock = system_clock,
        bus: EventBus | None = None,
    ) -> None:
        self.rules = tuple(rules)
        self.monitor = monitor
        self.engine = engine
        self.actions = actions
        self._enabled = enabled
        self._subject = subject
        self.verify_timeouts = dict(verify_timeouts or {})
        self._clock = clock
        self._bus = bus if bus is not None else engine.bus
        self.last: dict[str, Trigger] = {}
        self._running: dict[str, asyncio.Task[AttemptResult]] = {}

    async def evaluate(self) -> list[Trigger]:
        """One pass (the background task's body)."""
        triggers = self.monitor.evaluate(self.rules, enabled=self._enabled())
        for rule, trigger in zip(self.rules, triggers, strict=True):
            self.last[rule.name] = trigger
            running = self._running.get(rule.name)
            if trigger.decision is Decision.ACT and (
                running is None or running.done()
            ):
                self._running[rule.name] = (
                    asyncio.get_running_loop().create_task(
                        self._attempt(rule, trigger),
                        name=f"preventive:{rule.name}",
                    )
                )
        return triggers

    async def _attempt(
        self, rule: PreventiveRule, trigger: Trigger
    ) -> AttemptResult:
        subject, breaker = self._subject(rule)
        self._publish(rule, trigger, subject)

        async def heal() -> bool:
            action = self.actions[rule.action]
            result = await action.run()
            _log.info(
                "preventive rule %s ran %s: %s",
                rule.name,
                action.name,
                result.detail,
            )
            return await self._verify(rule)

        return await self.engine.attempt(
            subject,
            heal,
            breaker=breaker,
            details={
                "preventive": True,
                "rule": rule.name,
                "condition": rule.condition,
                "forecast": trigger.reason,
                "action": rule.action,
            },
        )

    async def _verify(self, rule: PreventiveRule) -> bool:
        """The condition no longer holds on samples taken after the action."""
        clock = self._clock
        timeout = self.verify_timeouts.get(rule.name, DEFAULT_VERIFY_TIMEOUT)
        deadline = clock.monotonic() + timeout
        while True:
            await asyncio.to_thread(self.monitor.sample)
            now = clock.monotonic()
            try:
                series = self.monitor.series(rule.series)
            except KeyError:
                return True  # nothing left to measure: the process is new
            if not rule.check(series, now=now, wall_now=clock.time()).fires:
                return True
            if now >= deadline:
                return False
            await clock.sleep(min(_VERIFY_POLL, deadline - now))

    def snapshot(self) -> list[dict[str, Any]]:
        """The latest evaluation of every rule, for the status."""
        return [
            trigger.to_dict()
            for name in (r.name for r in self.rules)
            if (trigger := self.last.get(name)) is not None
        ]

    def issues(self) -> list[tuple[str, str]]:
        """(issue, recommendation) for each forecast breach."""
        found = []
        for trigger in self.last.values():
            issue = trigger.issue
            if issue is None:
                continue
            if trigger.decision is Decision.DISABLED:
                advice = (
                    "FEATURE_PREVENTIVE_HEALING_ENABLED is off: act by hand, "
                    f"or enable it to let {trigger.action!r} run"
                )
            else:
                advice = (
                    f"The daemon runs {trigger.action!r} before the breach; "
                    f"watch it: GET /api/events?kind=healing.*"
                )
            found.append((issue, advice))
        return found

    async def aclose(self) -> None:
        running = [t for t in self._running.values() if not t.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running)

    def _publish(
        self, rule: PreventiveRule, trigger: Trigger, subject: str
    ) -> None:
        self._bus.publish(
            Event(
                EventKind.PREVENTIVE_TRIGGERED,
                self._clock.time(),
                "PreventiveHealing",
                f"preventive rule {rule.name} fires: {trigger.reason}; "
                f"running {rule.action}",
                target=subject,
                data=trigger.to_dict(),
            )
        )
