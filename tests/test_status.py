from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from selfhealing.breaker import (
    PERMANENT_OPEN_REASON,
    BreakerSettings,
    BreakerSnapshot,
    BreakerState,
)
from selfhealing.engine import EngineMode, EngineSnapshot
from selfhealing.exceptions import FlagValueError
from selfhealing.flags import FlagSource, FlagValue
from selfhealing.status import (
    DORMANT_ISSUE,
    DORMANT_RECOMMENDATION,
    Finding,
    Health,
    KeySummary,
    StatusInputs,
    build_status,
    evaluate,
)
from selfhealing.tasks import TaskManagerSnapshot, TaskSnapshot, TaskState


ENGINE = EngineSnapshot(
    enabled=True,
    mode=EngineMode.ACTIVE,
    dormant_reason=None,
    dormant_since=None,
    consecutive_failures=0,
    backoff_delay=5.0,
    next_attempt_at=None,
    total_attempts=42,
    successful_healings=40,
    failed_healings=2,
    relapses=0,
    max_consecutive_failures=10,
    in_progress=(),
    last_resume=None,
)


def breaker(
    state: BreakerState, name: str = "self-healing-main"
) -> BreakerSnapshot:
    return BreakerSnapshot(
        name=name,
        state=state,
        failure_count=0,
        trip_count=0,
        opened_at=None,
        next_attempt_at=1_767_225_660.0
        if state is BreakerState.OPEN
        else None,
        permanent_open_reason=PERMANENT_OPEN_REASON
        if state is BreakerState.PERMANENT_OPEN
        else None,
        half_open_in_flight=0,
        settings=BreakerSettings(),
    )


def tasks(*ids: str) -> TaskManagerSnapshot:
    snapshots = tuple(
        TaskSnapshot(
            i, 5.0, TaskState.SCHEDULED, 0, 0, 0, None, None, None, None
        )
        for i in ids
    )
    return TaskManagerSnapshot(len(snapshots), len(snapshots), snapshots)


@dataclass(frozen=True)
class Target:
    name: str
    healthy: bool | None
    detail: str | None = None


def status_of(inputs: StatusInputs) -> tuple[str, list[str], list[str]]:
    report = evaluate(inputs)
    return str(report.status), report.issues, report.recommendations


class TestHealthy:
    def test_the_guides_healthy_example(self) -> None:
        """Nothing wrong: healthy, no issues, no recommendations."""
        inputs = StatusInputs(
            engine=ENGINE,
            breakers=[breaker(BreakerState.CLOSED)],
            tasks=tasks("a", "b", "c"),
        )
        assert ("healthy", [], []) == status_of(inputs)

    def test_six_tasks_is_caution_not_warning(self) -> None:
        """6-10 tasks: still healthy, with a recommendation to clean up."""
        inputs = StatusInputs(engine=ENGINE, tasks=tasks(*"abcdef"))
        status, issues, recommendations = status_of(inputs)
        assert ("healthy", []) == (status, issues)
        assert [
            "6 background tasks: consider cleaning up (3-5 is normal, over 10 is an overload)"
        ] == recommendations


class TestCritical:
    def test_dormant_is_critical_with_the_guides_words(self) -> None:
        """Dormant: the guide's exact issue and recommendation."""
        engine = replace(
            ENGINE,
            mode=EngineMode.DORMANT,
            dormant_reason="Exceeded maximum consecutive failures (10)",
            consecutive_failures=10,
        )
        status, issues, recommendations = status_of(
            StatusInputs(engine=engine)
        )
        assert "critical" == status
        assert [DORMANT_ISSUE] == issues
        assert "CRITICAL: Self-Healing Engine in DORMANT mode" == DORMANT_ISSUE
        assert [DORMANT_RECOMMENDATION] == recommendations
        assert (
            "Call POST /api/system/heal/resume with valid reason"
            == DORMANT_RECOMMENDATION
        )

    def test_permanent_open_breaker_is_critical(self) -> None:
        """A PERMANENT_OPEN breaker is critical and says how to reset it."""
        inputs = StatusInputs(
            engine=ENGINE,
            breakers=[breaker(BreakerState.PERMANENT_OPEN, "db")],
        )
        status, issues, recommendations = status_of(inputs)
        assert "critical" == status
        assert [
            "CRITICAL: Circuit breaker db is PERMANENT_OPEN (Exceeded permanent failure threshold)"
        ] == issues
        assert "/api/circuit-breakers/db/reset" in recommendations[0]
        assert '"force": true' in recommendations[0]

    @pytest.mark.parametrize(
        ("keys", "expected"),
        [
            (KeySummary(total=2, active=0, failed=2), "critical"),
            (KeySummary(total=2, active=0, rate_limited=2), "critical"),
            (KeySummary(total=2, active=1, failed=1), "warning"),
            (KeySummary(total=0, advisor_configured=True), "warning"),
            (KeySummary(total=0), "healthy"),
            (KeySummary(total=3, active=3), "healthy"),
        ],
        ids=[
            "all-failed",
            "all-cooling",
            "some-failed",
            "no-key",
            "no-llm",
            "fine",
        ],
    )
    def test_key_rules(self, keys: KeySummary, expected: str) -> None:
        """Keys configured and none active is critical; some failed warns."""
        assert expected == status_of(StatusInputs(engine=ENGINE, keys=keys))[0]

    def test_critical_findings_come_first(self) -> None:
        """Issues are ordered worst first."""
        engine = replace(ENGINE, mode=EngineMode.DORMANT, dormant_reason="x")
        inputs = StatusInputs(
            engine=engine,
            breakers=[breaker(BreakerState.OPEN, "db")],
            targets=[Target("web", healthy=False)],
        )
        issues = evaluate(inputs).issues
        assert DORMANT_ISSUE == issues[0]
        assert all(i.startswith("WARNING:") for i in issues[1:])


class TestWarning:
    def test_five_consecutive_failures(self) -> None:
        """5 failures: the guide's warning issue and recommendation."""
        inputs = StatusInputs(engine=replace(ENGINE, consecutive_failures=5))
        assert (
            "warning",
            ["WARNING: Self-Healing has 5 consecutive failures"],
            ["System approaching Dormant Mode threshold (10 failures)"],
        ) == status_of(inputs)

    def test_four_failures_are_fine(self) -> None:
        """Below 5 failures nothing is reported."""
        inputs = StatusInputs(engine=replace(ENGINE, consecutive_failures=4))
        assert "healthy" == status_of(inputs)[0]

    @pytest.mark.parametrize(
        ("state", "issue"),
        [
            (BreakerState.OPEN, "WARNING: Circuit breaker db is OPEN"),
            (
                BreakerState.HALF_OPEN,
                "WARNING: Circuit breaker db is HALF_OPEN (testing recovery)",
            ),
        ],
    )
    def test_open_and_half_open_breakers(
        self, state: BreakerState, issue: str
    ) -> None:
        """OPEN and HALF_OPEN breakers are warnings."""
        inputs = StatusInputs(engine=ENGINE, breakers=[breaker(state, "db")])
        status, issues, recommendations = status_of(inputs)
        assert ("warning", [issue]) == (status, issues)
        assert 1 == len(recommendations)

    def test_open_breaker_says_when_it_retries(self) -> None:
        """The recommendation for OPEN names the automatic retry time."""
        inputs = StatusInputs(
            engine=ENGINE, breakers=[breaker(BreakerState.OPEN)]
        )
        assert "2026-01-01T00:01:00.000Z" in status_of(inputs)[2][0]

    def test_more_than_ten_tasks(self) -> None:
        """11 tasks is an overload warning; 10 is not."""
        eleven = StatusInputs(
            engine=ENGINE, tasks=tasks(*[f"t{i}" for i in range(11)])
        )
        ten = StatusInputs(
            engine=ENGINE, tasks=tasks(*[f"t{i}" for i in range(10)])
        )
        assert "warning" == status_of(eleven)[0]
        assert [
            "WARNING: 11 background tasks registered (more than 10: overload)"
        ] == status_of(eleven)[1]
        assert "healthy" == status_of(ten)[0]

    def test_duplicate_task_ids(self) -> None:
        """Two tasks sharing an id is a warning naming the id."""
        inputs = StatusInputs(engine=ENGINE, tasks=tasks("poll", "poll", "x"))
        status, issues, _ = status_of(inputs)
        assert ("warning", ["WARNING: Duplicate background tasks: poll"]) == (
            status,
            issues,
        )

    def test_unhealthy_target(self) -> None:
        """An unhealthy target is a warning with its detail; unknown is not."""
        inputs = StatusInputs(
            engine=ENGINE,
            targets=[
                Target("web", healthy=False, detail="HTTP 500"),
                Target("db", healthy=None),
                Target("cache", healthy=True),
            ],
        )
        assert (
            "warning",
            ["WARNING: Target web is unhealthy (HTTP 500)"],
        ) == status_of(inputs)[:2]

    def test_invalid_flag_file(self) -> None:
        """A flag file error found on reload is a warning with the fix."""
        error = FlagValueError(
            "FEATURE_AUTO_HEALING_ENABLED", "maybe", file=".env.local", line=3
        )
        status, issues, recommendations = status_of(
            StatusInputs(engine=ENGINE, flag_errors=[error])
        )
        assert "warning" == status
        assert [
            "WARNING: .env.local:3: FEATURE_AUTO_HEALING_ENABLED=maybe is not a boolean (use true/false, 1/0, yes/no, on/off)"
        ] == issues
        assert "POST /api/flags/reload" in recommendations[0]

    def test_process_monitoring_off(self) -> None:
        """Process monitoring switched off is a warning saying what stops."""
        flag = FlagValue(
            "FEATURE_PROCESS_MONITORING_ENABLED", False, FlagSource.ENV
        )
        status, issues, recommendations = status_of(
            StatusInputs(
                engine=ENGINE,
                flags={"FEATURE_PROCESS_MONITORING_ENABLED": flag},
            )
        )
        assert "warning" == status
        assert [
            "WARNING: Process monitoring is off (FEATURE_PROCESS_MONITORING_ENABLED=false from env)"
        ] == issues
        assert "not restarted" in recommendations[0]

    def test_healing_disabled_by_flag(self) -> None:
        """Automation switched off is reported with where it was switched."""
        flag = FlagValue(
            "FEATURE_AUTO_HEALING_ENABLED",
            False,
            FlagSource.DOTENV_LOCAL,
            ".env.local",
            4,
        )
        status, issues, _ = status_of(
            StatusInputs(
                engine=ENGINE, flags={"FEATURE_AUTO_HEALING_ENABLED": flag}
            )
        )
        assert "warning" == status
        assert [
            "WARNING: Automatic healing is disabled (FEATURE_AUTO_HEALING_ENABLED=false from .env.local:4)"
        ] == issues

    def test_extra_findings_are_included(self) -> None:
        """Findings other parts report directly join the rules' findings."""
        finding = Finding(
            Health.WARNING, "WARNING: audit store degraded", "free disk"
        )
        inputs = StatusInputs(engine=ENGINE, findings=[finding])
        assert (
            "warning",
            ["WARNING: audit store degraded"],
            ["free disk"],
        ) == status_of(inputs)


class TestDocument:
    def test_shape_matches_spec(self) -> None:
        """build_status returns every top-level key the SPEC names."""
        document = build_status(
            StatusInputs(
                engine=ENGINE,
                breakers=[breaker(BreakerState.CLOSED)],
                tasks=tasks("a"),
            ),
            now=1_767_225_600.0,
        )
        assert {
            "status",
            "timestamp",
            "selfHealing",
            "circuitBreakers",
            "backgroundTasks",
            "llm",
            "featureFlags",
            "targets",
            "issues",
            "recommendations",
        } <= document.keys()
        assert "2026-01-01T00:00:00.000Z" == document["timestamp"]
        assert {
            "enabled": True,
            "isDormant": False,
            "dormantReason": None,
            "consecutiveFailures": 0,
            "backoffDelay": 5000,
            "totalAttempts": 42,
            "successfulHealings": 40,
            "failedHealings": 2,
        }.items() <= document["selfHealing"].items()
        assert {"totalKeys": 0, "activeKeys": 0, "failedKeys": 0}.items() <= (
            document["llm"]["keyManagement"].items()
        )
        assert {"totalTasks": 1, "activeTasks": 1}.items() <= document[
            "backgroundTasks"
        ].items()

    def test_recommendations_are_deduplicated(self) -> None:
        """Two findings with the same advice list it once."""
        advice = "do the thing"
        inputs = StatusInputs(
            engine=ENGINE,
            findings=[
                Finding(Health.WARNING, "WARNING: a", advice),
                Finding(Health.WARNING, "WARNING: b", advice),
            ],
        )
        assert [advice] == evaluate(inputs).recommendations
