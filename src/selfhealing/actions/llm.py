"""LLMAction: a rung that asks the advisor which allowed action to run.

The advisor sees this target's evidence and may only pick one of the
actions listed in ``allowed`` (or escalate). The chosen action then runs
right here, inside the same healing attempt: the same engine, breakers and
verification as any other rung. An escalation, an invalid or unconfident
answer, or a failing advisor is a failed rung, so the ladder goes on.
"""

from __future__ import annotations

import asyncio

from collections.abc import Callable, Sequence
from datetime import timedelta

from selfhealing.actions._base import ActionResult, RemediationAction
from selfhealing.checks._probe import check_timeout
from selfhealing.clock import Clock, system_clock
from selfhealing.llm.advisor import LLMAdvisor
from selfhealing.llm.answer import NO_ACTION, AllowedAction
from selfhealing.llm.evidence import Evidence


__all__ = ["LLMAction", "describe_action"]


def describe_action(action: RemediationAction) -> str:
    """One line for the model: what this action does."""
    return f"{action.kind} action {action.name!r}"


class LLMAction:
    kind = "llm"

    def __init__(
        self,
        name: str,
        advisor: LLMAdvisor | None,
        allowed: Sequence[RemediationAction],
        evidence: Callable[[], Evidence],
        *,
        timeout: float | timedelta = 60.0,
        clock: Clock = system_clock,
    ) -> None:
        self.name = name
        self.advisor = advisor
        self.allowed = {action.name: action for action in allowed}
        self.evidence = evidence
        self.timeout = check_timeout(timeout)
        self._clock = clock

    async def run(self) -> ActionResult:
        at = self._clock.time()
        start = self._clock.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                ok, detail = await self._advise_and_act()
        except TimeoutError:
            ok, detail = False, f"timed out after {self.timeout:.3f}s"
        duration = self._clock.monotonic() - start
        return ActionResult(self.name, ok, detail, duration, at)

    async def _advise_and_act(self) -> tuple[bool, str]:
        if self.advisor is None:
            return False, "escalated: no LLM advisor is configured"
        advice = await self.advisor.advise(
            self.evidence(),
            [
                AllowedAction(name, describe_action(action))
                for name, action in self.allowed.items()
            ],
        )
        if advice.actionable:
            chosen = self.allowed[advice.action_id]
            result = await chosen.run()
            return result.ok, (
                f"advisor chose {chosen.name} ({advice.confidence:.2f}: "
                f"{advice.diagnosis}); {result.detail}"
            )
        if advice.action_id == NO_ACTION and advice.error is None:
            return False, f"advisor chose no_action: {advice.diagnosis}"
        return (
            False,
            f"escalated to a human: {advice.error or advice.diagnosis}",
        )

    def __repr__(self) -> str:
        return f"LLMAction({self.name!r}, allowed={sorted(self.allowed)})"
