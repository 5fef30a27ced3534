"""GET /metrics: Prometheus exposition of one runtime, on its own registry."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from selfhealing.checks import CallableCheck, CheckResult
from selfhealing.config import parse_config
from selfhealing.events import Event, EventKind
from selfhealing.metrics import CONTENT_TYPE, Metrics
from selfhealing.runtime import Runtime
from selfhealing.store.sqlite import SQLiteAuditStore
from selfhealing.targets import Target
from selfhealing.testing import FakeClock
from support import LiveDaemon


PY = sys.executable
MAIN = "self-healing-main"

# Family name (as Prometheus's parser names it) -> type.
EXPECTED_TYPES = {
    "selfheal_audit_pending": "gauge",
    "selfheal_audit_write_seconds": "histogram",
    "selfheal_background_tasks": "gauge",
    "selfheal_background_tasks_registered": "gauge",
    "selfheal_backoff_delay_seconds": "gauge",
    "selfheal_breaker_failures": "gauge",
    "selfheal_breaker_state": "gauge",
    "selfheal_breaker_trips": "counter",
    "selfheal_check_duration_seconds": "histogram",
    "selfheal_checks": "counter",
    "selfheal_consecutive_failures": "gauge",
    "selfheal_dormant": "gauge",
    "selfheal_healing_attempts": "counter",
    "selfheal_healing_enabled": "gauge",
    "selfheal_healing_relapses": "counter",
    "selfheal_healing_skipped": "counter",
    "selfheal_healings_in_progress": "gauge",
    "selfheal_info": "gauge",
    "selfheal_llm_keys": "gauge",
    "selfheal_process_restarts": "counter",
    "selfheal_process_up": "gauge",
    "selfheal_target_healthy": "gauge",
}

# A healthy command target and a supervised process (with its implicit
# process target), so every family has samples.
WATCHED_CONFIG: dict[str, Any] = {
    "processes": [
        {
            "name": "worker",
            "command": [PY, "-c", "import time; time.sleep(600)"],
            "stop_timeout": "2s",
        }
    ],
    "targets": [
        {
            "name": "api",
            "actions": ["noop"],
            "check": {
                "type": "command",
                "command": ["true"],
                "interval": "50ms",
                "timeout": "2s",
            },
        }
    ],
    "actions": [{"name": "noop", "type": "command", "command": ["true"]}],
}

# The check passes while ./healthy exists; the fix copies ./spare there, so
# it fails until the test provides ./spare. Two failed attempts trip the
# main breaker (which then stays OPEN for an hour) and make the engine
# dormant.
SCENARIO_CONFIG: dict[str, Any] = {
    "engine": {
        "max_consecutive_failures": 2,
        "backoff_base": "10ms",
        "backoff_max": "80ms",
    },
    "breakers": {
        MAIN: {"failure_threshold": 2, "recovery_timeout": "1h"},
    },
    "targets": [
        {
            "name": "api",
            "actions": ["restore"],
            "verify_timeout": "150ms",
            "verify_settle": "0s",
            "relapse_window": "0s",
            "check": {
                "type": "command",
                "command": ["test", "-f", "healthy"],
                "interval": "50ms",
                "timeout": "2s",
                "failure_threshold": 1,
            },
        }
    ],
    "actions": [
        {
            "name": "restore",
            "type": "command",
            "command": ["cp", "spare", "healthy"],
        }
    ],
}


class Scrape:
    """One parsed exposition: families by name, sample values by labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {
            f.name: f for f in text_string_to_metric_families(text)
        }

    def value(self, sample: str, **labels: str) -> float | None:
        """The value of *sample* with exactly *labels*, None if absent."""
        for family in self.families.values():
            for found in family.samples:
                if found.name == sample and found.labels == labels:
                    return float(found.value)
        return None

    def series(self, sample: str) -> list[dict[str, str]]:
        """The label sets *sample* is exposed with."""
        return [
            s.labels
            for family in self.families.values()
            for s in family.samples
            if s.name == sample
        ]


def scrape(live: LiveDaemon) -> Scrape:
    response = live.get("/metrics")
    assert 200 == response.status_code
    return Scrape(response.text)


def local(runtime: Runtime) -> Scrape:
    return Scrape(runtime.metrics.render().decode())


def wait_for(
    predicate: Callable[[], bool], *, timeout: float = 10, what: str = ""
) -> None:
    """Poll *predicate* until it holds; no fixed sleep decides a test."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.02)


def bare_runtime(tmp_path: Path, **kwargs: Any) -> Runtime:
    return Runtime(directory=tmp_path, environ={}, persistent=False, **kwargs)


class TestExposition:
    def test_every_metric_has_its_type(
        self, start_live: Callable[..., LiveDaemon]
    ) -> None:
        """Prometheus's own parser reads every family with the right type."""
        live = start_live(WATCHED_CONFIG)
        wait_for(
            lambda: (
                scrape(live).value("selfheal_target_healthy", target="api")
                == 1
            ),
            what="api checked healthy",
        )
        families = scrape(live).families

        assert EXPECTED_TYPES == {
            name: families[name].type for name in EXPECTED_TYPES
        }

    def test_scrape_reflects_the_runtime(
        self, start_live: Callable[..., LiveDaemon]
    ) -> None:
        """Processes, tasks, keys and the version read as they are now."""
        live = start_live(
            WATCHED_CONFIG, {"ANTHROPIC_API_KEY": "sk-ant-test-0000"}
        )
        wait_for(
            lambda: (
                (
                    scrape(live).value(
                        "selfheal_checks_total", target="worker", result="ok"
                    )
                    or 0
                )
                >= 1
            ),
            what="the worker's process check",
        )
        found = scrape(live)
        version = found.series("selfheal_info")[0]["version"]

        # Two probes and the resource monitor (lag probe and sampler).
        assert (1.0, 0.0, 3.0, 1.0, 1.0, 1.0) == (
            found.value("selfheal_process_up", process="worker"),
            found.value("selfheal_process_restarts_total", process="worker"),
            found.value("selfheal_background_tasks_registered"),
            found.value("selfheal_llm_keys", state="active"),
            found.value("selfheal_healing_enabled"),
            found.value("selfheal_info", version=version),
        )
        assert [{"target": "api"}, {"target": "worker"}] == sorted(
            found.series("selfheal_target_healthy"), key=str
        )

    def test_content_type(self, live: LiveDaemon) -> None:
        """The route answers in text format 0.0.4, as Prometheus expects."""
        response = live.get("/metrics")

        assert (200, "text/plain; version=0.0.4; charset=utf-8") == (
            response.status_code,
            response.headers["content-type"],
        )
        assert CONTENT_TYPE == response.headers["content-type"]

    def test_promtool_accepts_the_exposition(
        self, start_live: Callable[..., LiveDaemon]
    ) -> None:
        """`promtool check metrics` finds no problem in a full scrape."""
        promtool = shutil.which("promtool")
        if promtool is None:
            pytest.skip("promtool not on PATH (Debian package prometheus)")
        live = start_live(WATCHED_CONFIG)
        wait_for(
            lambda: (
                scrape(live).value("selfheal_target_healthy", target="api")
                == 1
            ),
            what="api checked healthy",
        )
        done = subprocess.run(
            [promtool, "check", "metrics"],
            input=scrape(live).text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

        assert (0, "") == (done.returncode, done.stdout + done.stderr)


class TestScenario:
    def test_failures_dormant_and_resume(
        self, start_live: Callable[..., LiveDaemon], tmp_path: Path
    ) -> None:
        """Counters and gauges follow a target into dormant mode and out."""
        (tmp_path / "healthy").touch()
        live = start_live(SCENARIO_CONFIG)
        wait_for(
            lambda: (
                scrape(live).value("selfheal_target_healthy", target="api")
                == 1
            ),
            what="api healthy",
        )
        before = scrape(live)
        assert (0.0, 0.0, 0.0, 0.0, 1.0, 0.0) == (
            before.value(
                "selfheal_healing_attempts_total",
                target="api",
                outcome="failed",
            ),
            before.value("selfheal_dormant"),
            before.value("selfheal_consecutive_failures"),
            before.value("selfheal_breaker_trips_total", breaker=MAIN),
            before.value(
                "selfheal_breaker_state", breaker=MAIN, state="CLOSED"
            ),
            before.value("selfheal_breaker_state", breaker=MAIN, state="OPEN"),
        )
        checks_before = before.value(
            "selfheal_check_duration_seconds_count", target="api"
        )
        assert checks_before is not None
        assert checks_before >= 1

        # Break it: two failed attempts, the breaker trips, dormant mode.
        (tmp_path / "healthy").unlink()
        wait_for(
            lambda: scrape(live).value("selfheal_dormant") == 1,
            what="dormant",
        )
        wait_for(
            lambda: (
                scrape(live).value(
                    "selfheal_healing_skipped_total",
                    target="api",
                    reason="dormant",
                )
                == 1
            ),
            what="the dormant skip",
        )
        dormant = scrape(live)
        assert (2.0, 0.0, 2.0, 1.0, 0.0, 1.0, 0.0) == (
            dormant.value(
                "selfheal_healing_attempts_total",
                target="api",
                outcome="failed",
            ),
            dormant.value(
                "selfheal_healing_attempts_total",
                target="api",
                outcome="succeeded",
            ),
            dormant.value("selfheal_consecutive_failures"),
            dormant.value(
                "selfheal_breaker_state", breaker=MAIN, state="OPEN"
            ),
            dormant.value(
                "selfheal_breaker_state", breaker=MAIN, state="CLOSED"
            ),
            dormant.value("selfheal_breaker_trips_total", breaker=MAIN),
            dormant.value("selfheal_target_healthy", target="api"),
        )
        skipped = dormant.value(
            "selfheal_healing_attempts_total", target="api", outcome="skipped"
        )
        assert skipped is not None
        assert skipped >= 1
        checks_dormant = dormant.value(
            "selfheal_check_duration_seconds_count", target="api"
        )
        fails = dormant.value(
            "selfheal_checks_total", target="api", result="fail"
        )
        assert checks_dormant is not None
        assert checks_dormant > checks_before
        assert fails is not None
        assert fails >= 1
        assert pytest.approx(0.04) == dormant.value(
            "selfheal_backoff_delay_seconds"
        )

        # Fix the cause, resume: the next attempt heals and is verified.
        (tmp_path / "spare").touch()
        response = live.post(
            "/api/system/heal/resume", json={"reason": "spare restored"}
        )
        assert response.json()["resumed"] is True
        resumed = scrape(live)
        # A success may already have happened: either way these hold.
        assert (0.0, 0.0, 0.0, 1.0, 1.0) == (
            resumed.value("selfheal_dormant"),
            resumed.value("selfheal_consecutive_failures"),
            resumed.value(
                "selfheal_breaker_state", breaker=MAIN, state="OPEN"
            ),
            resumed.value(
                "selfheal_breaker_state", breaker=MAIN, state="CLOSED"
            ),
            resumed.value("selfheal_breaker_trips_total", breaker=MAIN),
        )
        wait_for(
            lambda: (
                scrape(live).value(
                    "selfheal_healing_attempts_total",
                    target="api",
                    outcome="succeeded",
                )
                == 1
            ),
            what="a verified healing",
        )
        healed = scrape(live)
        assert (2.0, 1.0) == (
            healed.value(
                "selfheal_healing_attempts_total",
                target="api",
                outcome="failed",
            ),
            healed.value("selfheal_target_healthy", target="api"),
        )

    def test_audit_commits_are_timed(self, live: LiveDaemon) -> None:
        """The SQLite writer's commits land in the audit histogram."""
        audit = live.runtime.audit
        assert isinstance(audit, SQLiteAuditStore)
        live.on_loop(
            lambda: live.runtime.bus.publish(
                Event(EventKind.OPERATOR_ACTION, 0.0, "test", "hello")
            )
        )
        assert audit.flush(5.0)
        found = scrape(live)
        count = found.value("selfheal_audit_write_seconds_count")

        assert count is not None
        assert count >= 1
        assert 0.0 == found.value("selfheal_audit_pending")


class TestIsolation:
    def test_two_runtimes_have_their_own_registries(
        self, tmp_path: Path
    ) -> None:
        """Events on one runtime's bus never show in the other's scrape."""
        first = bare_runtime(tmp_path / "a")
        second = bare_runtime(tmp_path / "b")
        first.bus.publish(
            Event(EventKind.HEALING_FAILED, 0.0, "test", "x", target="api")
        )

        assert first.metrics.registry is not second.metrics.registry
        assert (1.0, None) == (
            local(first).value(
                "selfheal_healing_attempts_total",
                target="api",
                outcome="failed",
            ),
            local(second).value(
                "selfheal_healing_attempts_total",
                target="api",
                outcome="failed",
            ),
        )
        assert REGISTRY.get_sample_value("selfheal_dormant") is None

    def test_a_registry_takes_one_metrics(self, tmp_path: Path) -> None:
        """A second Metrics on the same registry is refused, not doubled."""
        runtime = bare_runtime(tmp_path)
        subscribers = len(runtime.bus)

        with pytest.raises(ValueError, match="Duplicated timeseries"):
            Metrics(runtime, registry=runtime.metrics.registry)
        assert subscribers == len(runtime.bus)

    def test_a_given_registry_is_used(self, tmp_path: Path) -> None:
        """Metrics collect into the registry they are given."""
        runtime = bare_runtime(tmp_path)
        registry = CollectorRegistry()
        metrics = Metrics(runtime, registry=registry)
        runtime.bus.publish(
            Event(EventKind.HEALING_SUCCEEDED, 0.0, "t", "x", target="db")
        )
        metrics.close()
        runtime.bus.publish(
            Event(EventKind.HEALING_SUCCEEDED, 0.0, "t", "x", target="db")
        )

        assert 1.0 == registry.get_sample_value(
            "selfheal_healing_attempts_total",
            {"target": "db", "outcome": "succeeded"},
        )


class TestCounters:
    def test_trips_survive_a_reset(self, tmp_path: Path) -> None:
        """A forced reset zeroes trip_count, never the trips counter."""
        runtime = bare_runtime(tmp_path, clock=FakeClock())
        breaker = runtime.registry.get_or_create("db", failure_threshold=1)
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
        breaker.reset(force=True)
        found = local(runtime)

        assert (0, 1.0, 1.0) == (
            breaker.trip_count,
            found.value("selfheal_breaker_trips_total", breaker="db"),
            found.value(
                "selfheal_breaker_state", breaker="db", state="CLOSED"
            ),
        )

    def test_skips_are_counted_by_reason(self, tmp_path: Path) -> None:
        """Every skip counts once as an outcome and once under its reason."""
        runtime = bare_runtime(tmp_path)
        for reason in ("backoff", "backoff", "dormant"):
            runtime.bus.publish(
                Event(
                    EventKind.HEALING_SKIPPED,
                    0.0,
                    "t",
                    "x",
                    target="api",
                    reason=reason,
                )
            )
        found = local(runtime)

        assert (3.0, 2.0, 1.0) == (
            found.value(
                "selfheal_healing_attempts_total",
                target="api",
                outcome="skipped",
            ),
            found.value(
                "selfheal_healing_skipped_total",
                target="api",
                reason="backoff",
            ),
            found.value(
                "selfheal_healing_skipped_total",
                target="api",
                reason="dormant",
            ),
        )

    def test_fifty_targets_each_have_series(self, tmp_path: Path) -> None:
        """Configured targets start at zero, before anything happened."""
        runtime = Runtime(
            parse_config(many_targets(50)),
            directory=tmp_path,
            environ={},
            persistent=False,
        )
        found = local(runtime)

        assert 50 * 3 == len(found.series("selfheal_healing_attempts_total"))
        assert 50 * 2 == len(found.series("selfheal_checks_total"))
        assert {0.0} == {
            found.value(
                "selfheal_healing_attempts_total",
                target=f"t{i}",
                outcome="failed",
            )
            for i in range(50)
        }


def many_targets(count: int) -> dict[str, Any]:
    return {
        "targets": [
            {
                "name": f"t{i}",
                "actions": ["noop"],
                "check": {"type": "command", "command": ["true"]},
            }
            for i in range(count)
        ],
        "actions": [{"name": "noop", "type": "command", "command": ["true"]}],
    }


class TestHooks:
    @pytest.mark.anyio
    async def test_added_targets_are_counted(self, tmp_path: Path) -> None:
        """A library target added to the runtime feeds the check metrics."""
        runtime = bare_runtime(tmp_path)

        async def ok() -> bool:
            return True

        target = Target(
            "lib",
            CallableCheck(ok),
            [],
            engine=runtime.engine,
            breaker=runtime.registry.get_or_create("target:lib"),
            interval=60.0,
        )
        runtime.add_target(target)
        await target.probe()
        await target.aclose()
        found = local(runtime)

        assert (1.0, 1.0, 1.0) == (
            found.value("selfheal_checks_total", target="lib", result="ok"),
            found.value("selfheal_check_duration_seconds_count", target="lib"),
            found.value("selfheal_target_healthy", target="lib"),
        )

    @pytest.mark.anyio
    async def test_a_failing_check_hook_never_breaks_a_probe(
        self, tmp_path: Path
    ) -> None:
        """A hook that raises is logged; the probe still records health."""
        runtime = bare_runtime(tmp_path)

        def broken(target: Target, result: CheckResult) -> None:
            raise RuntimeError("observer bug")

        async def ok() -> bool:
            return True

        target = Target(
            "lib",
            CallableCheck(ok),
            [],
            engine=runtime.engine,
            breaker=runtime.registry.get_or_create("target:lib"),
            interval=60.0,
            on_check=broken,
        )
        result = await target.probe()
        await target.aclose()

        assert result is not None
        assert (True, "healthy") == (result.ok, str(target.health))

    def test_commit_hook_gets_events_and_seconds(self, tmp_path: Path) -> None:
        """on_commit runs on the writer thread with (events, seconds)."""
        calls: list[tuple[int, float]] = []

        def hook(events: int, seconds: float) -> None:
            calls.append((events, seconds))

        with SQLiteAuditStore(tmp_path / "a.db", on_commit=hook) as store:
            for i in range(3):
                store.record(
                    Event(EventKind.OPERATOR_ACTION, 0.0, "t", str(i))
                )
            assert store.flush(5.0)

        assert 3 == sum(events for events, _ in calls)
        assert all(seconds >= 0 for _, seconds in calls)

    def test_a_failing_commit_hook_keeps_the_writer(
        self, tmp_path: Path
    ) -> None:
        """A hook that raises never stops the audit writer."""

        def broken(events: int, seconds: float) -> None:
            raise RuntimeError("observer bug")

        with SQLiteAuditStore(tmp_path / "a.db", on_commit=broken) as store:
            store.record(Event(EventKind.OPERATOR_ACTION, 0.0, "t", "one"))
            assert store.flush(5.0)
            store.record(Event(EventKind.OPERATOR_ACTION, 0.0, "t", "two"))
            assert store.flush(5.0)

            assert (2, True) == (store.count(), store.health.ok)
