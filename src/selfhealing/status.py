"""The status rules: from each part's snapshot to healthy / warning / critical.

``evaluate(inputs)`` is a pure function. Each rule looks at one part and
yields Findings; the worst severity is the status. Issue texts start with
``CRITICAL:`` or ``WARNING:`` and each comes with a recommendation an
operator can act on, worded as the operations guide words them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from selfhealing.breaker import BreakerSnapshot, BreakerState
from selfhealing.clock import utc_iso
from selfhealing.engine import EngineSnapshot
from selfhealing.exceptions import ConfigError
from selfhealing.flags import (
    AUTO_DETECTION,
    AUTO_HEALING,
    PROCESS_MONITORING,
    FlagValue,
)
from selfhealing.tasks import TaskManagerSnapshot


__all__ = [
    "DORMANT_ISSUE",
    "DORMANT_RECOMMENDATION",
    "TASK_CAUTION",
    "TASK_OVERLOAD",
    "Finding",
    "Health",
    "KeySummary",
    "StatusInputs",
    "StatusReport",
    "TargetView",
    "build_status",
    "evaluate",
]

DORMANT_ISSUE = "CRITICAL: Self-Healing Engine in DORMANT mode"
DORMANT_RECOMMENDATION = "Call POST /api/system/heal/resume with valid reason"
TASK_CAUTION = 6  # the guide: 3-5 normal, 6-10 caution, more than 10 overload
TASK_OVERLOAD = 10


class Health(StrEnum):
    HEALTHY = "healthy"
    WARNING = "warning"
    CRITICAL = "critical"


_RANK = {Health.HEALTHY: 0, Health.WARNING: 1, Health.CRITICAL: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """One issue and what to do about it (severity HEALTHY: advice only)."""

    severity: Health
    issue: str | None
    recommendation: str


@dataclass(frozen=True, slots=True)
class KeySummary:
    """The LLM key pool as the status rules see it."""

    total: int = 0
    active: int = 0
    failed: int = 0
    rate_limited: int = 0
    advisor_configured: bool = False


class TargetView(Protocol):
    """What the rules read from a watched target."""

    @property
    def name(self) -> str: ...

    @property
    def healthy(self) -> bool | None:
        """True, False, or None while not yet known."""

    @property
    def detail(self) -> str | None:
        """Why it is unhealthy, in a few words."""


@dataclass(frozen=True, slots=True)
class StatusInputs:
    """Every part's snapshot; parts a deployment lacks stay empty."""

    engine: EngineSnapshot
    breakers: Sequence[BreakerSnapshot] = ()
    tasks: TaskManagerSnapshot | None = None
    flags: Mapping[str, FlagValue] = field(default_factory=dict)
    flag_errors: Sequence[ConfigError] = ()
    keys: KeySummary = field(default_factory=KeySummary)
    targets: Sequence[TargetView] = ()  # each may also have to_dict()
    findings: Sequence[Finding] = ()  # reported by other parts directly


@dataclass(frozen=True, slots=True)
class StatusReport:
    status: Health
    findings: tuple[Finding, ...]

    @property
    def issues(self) -> list[str]:
        return [f.issue for f in self.findings if f.issue is not None]

    @property
    def recommendations(self) -> list[str]:
        seen: dict[str, None] = {}
        for finding in self.findings:
            seen.setdefault(finding.recommendation)
        return list(seen)


Rule = Callable[[StatusInputs], Iterable[Finding]]


def _critical(issue: str, recommendation: str) -> Finding:
    return Finding(Health.CRITICAL, f"CRITICAL: {issue}", recommendation)


def _warning(issue: str, recommendation: str) -> Finding:
    return Finding(Health.WARNING, f"WARNING: {issue}", recommendation)


def dormant_rule(inputs: StatusInputs) -> Iterator[Finding]:
    if inputs.engine.is_dormant:
        yield Finding(Health.CRITICAL, DORMANT_ISSUE, DORMANT_RECOMMENDATION)


def failure_streak_rule(inputs: StatusInputs) -> Iterator[Finding]:
    engine = inputs.engine
    threshold = max(1, engine.max_consecutive_failures // 2)
    if not engine.is_dormant and engine.consecutive_failures >= threshold:
        yield _warning(
            "Self-Healing has "
            f"{engine.consecutive_failures} consecutive failures",
            "System approaching Dormant Mode threshold "
            f"({engine.max_consecutive_failures} failures)",
        )


def breaker_rule(inputs: StatusInputs) -> Iterator[Finding]:
    for breaker in inputs.breakers:
        name = breaker.name
        if breaker.state is BreakerState.PERMANENT_OPEN:
            yield _critical(
                f"Circuit breaker {name} is PERMANENT_OPEN "
                f"({breaker.permanent_open_reason})",
                "Fix the root cause first, then force a reset: "
                f"POST /api/circuit-breakers/{name}/reset with "
                '{"force": true, "reason": "..."}',
            )
        elif breaker.state is BreakerState.OPEN:
            yield _warning(
                f"Circuit breaker {name} is OPEN",
                f"It retries by itself at {utc_iso(breaker.next_attempt_at)}; "
                "check what it guards",
            )
        elif breaker.state is BreakerState.HALF_OPEN:
            yield _warning(
                f"Circuit breaker {name} is HALF_OPEN (testing recovery)",
                f"Monitor {name}: one successful trial call closes it",
            )


def task_rule(inputs: StatusInputs) -> Iterator[Finding]:
    tasks = inputs.tasks
    if tasks is None:
        return
    duplicates = sorted(
        task_id
        for task_id, count in Counter(t.id for t in tasks.tasks).items()
        if count > 1
    )
    if duplicates:
        yield _warning(
            f"Duplicate background tasks: {', '.join(duplicates)}",
            "Restart the daemon, and register tasks through "
            "background_task_manager.register_interval",
        )
    # The daemon's own tasks (a probe per target, resource samplers) are
    # expected; the guide's thresholds are about the tasks beyond them.
    own = sum(task.kind != "task" for task in tasks.tasks)
    count = tasks.total_tasks - own
    also = f" besides {own} of the daemon's own" if own else ""
    if count > TASK_OVERLOAD:
        yield _warning(
            f"{count} background tasks registered{also} "
            f"(more than {TASK_OVERLOAD}: overload)",
            "Clean up now (POST /api/tasks/cleanup), restart, and replace "
            "direct intervals with register_interval",
        )
    elif count >= TASK_CAUTION:
        yield Finding(
            Health.HEALTHY,
            None,
            f"{count} background tasks{also}: consider cleaning up "
            f"(3-5 is normal, over {TASK_OVERLOAD} is an overload)",
        )


def key_rule(inputs: StatusInputs) -> Iterator[Finding]:
    keys = inputs.keys
    if keys.total and not keys.active:
        yield _critical(
            f"All API keys failed ({keys.failed} failed, "
            f"{keys.rate_limited} rate limited)",
            "Add a valid key (ANTHROPIC_API_KEY in .env.local) and restart, "
            "or reset a key: POST /api/llm/keys/{id}/reset",
        )
    elif keys.failed:
        yield _warning(
            f"{keys.failed} of {keys.total} API keys failed",
            "Check the failed keys in the Anthropic console, then replace "
            "them or reset them: selfheal llm keys list",
        )
    elif keys.advisor_configured and not keys.total:
        yield _warning(
            "LLM advisor configured but no API key is set",
            'Add a key: echo "ANTHROPIC_API_KEY=sk-ant-..." >> .env.local '
            "and restart",
        )


def target_rule(inputs: StatusInputs) -> Iterator[Finding]:
    for target in inputs.targets:
        if target.healthy is False:
            detail = f" ({target.detail})" if target.detail else ""
            yield _warning(
                f"Target {target.name} is unhealthy{detail}",
                f"Watch its healing: GET /api/events?target={target.name}",
            )


def flag_rule(inputs: StatusInputs) -> Iterator[Finding]:
    for error in inputs.flag_errors:
        yield _warning(
            str(error),
            f"Fix the line in {error.where or 'the file'}, then "
            "POST /api/flags/reload (the previous value stays in force)",
        )
    healing = inputs.flags.get(AUTO_HEALING)
    if healing is not None and not healing.enabled:
        yield _warning(
            f"Automatic healing is disabled ({AUTO_HEALING}=false from "
            f"{healing.where or healing.source})",
            "Re-enable when ready: remove the line from .env.local (or "
            f"append {AUTO_HEALING}=true) and restart",
        )
    detection = inputs.flags.get(AUTO_DETECTION)
    if detection is not None and not detection.enabled:
        yield _warning(
            f"Detection is paused ({AUTO_DETECTION}=false from "
            f"{detection.where or detection.source})",
            "Checks do not run, so target health is not current; re-enable "
            f"{AUTO_DETECTION} when ready",
        )
    monitoring = inputs.flags.get(PROCESS_MONITORING)
    if monitoring is not None and not monitoring.enabled:
        yield _warning(
            f"Process monitoring is off ({PROCESS_MONITORING}=false from "
            f"{monitoring.where or monitoring.source})",
            "Crashed processes are not restarted and resources are not "
            f"sampled; re-enable {PROCESS_MONITORING} when ready",
        )


RULES: tuple[Rule, ...] = (
    dormant_rule,
    breaker_rule,
    key_rule,
    failure_streak_rule,
    task_rule,
    target_rule,
    flag_rule,
)


def evaluate(
    inputs: StatusInputs, rules: Sequence[Rule] = RULES
) -> StatusReport:
    """Apply every rule; the worst severity found is the status."""
    findings = [f for rule in rules for f in rule(inputs)]
    findings.extend(inputs.findings)
    findings.sort(key=lambda f: -_RANK[f.severity])
    worst = max(
        (f.severity for f in findings),
        key=_RANK.__getitem__,
        default=Health.HEALTHY,
    )
    return StatusReport(worst, tuple(findings))


def build_status(
    inputs: StatusInputs, *, now: float, extra: Mapping[str, Any] = {}
) -> dict[str, Any]:
    """The ``GET /api/status`` document (camelCase), rules applied."""
    report = evaluate(inputs)
    keys = inputs.keys
    document: dict[str, Any] = {
        "status": str(report.status),
        "timestamp": utc_iso(now),
        "selfHealing": inputs.engine.to_dict(),
        "circuitBreakers": [b.to_dict() for b in inputs.breakers],
        "backgroundTasks": (
            inputs.tasks.to_dict()
            if inputs.tasks is not None
            else {"totalTasks": 0, "activeTasks": 0, "tasks": []}
        ),
        "llm": {
            "keyManagement": {
                "totalKeys": keys.total,
                "activeKeys": keys.active,
                "failedKeys": keys.failed,
                "rateLimitedKeys": keys.rate_limited,
            }
        },
        "featureFlags": {
            name: value.to_dict() for name, value in inputs.flags.items()
        },
        "targets": [],
        "issues": report.issues,
        "recommendations": report.recommendations,
    }
    document.update(extra)
    return document
