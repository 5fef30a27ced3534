from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import socket
import subprocess
import sys

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from rich.console import Console
from typer.testing import CliRunner, Result

from selfhealing.breaker import BreakerState
from selfhealing.cli import _client, _control, _status, app
from selfhealing.exceptions import CircuitOpenError
from selfhealing.flags import AUTO_HEALING, PREVENTIVE_HEALING


LiveDaemon = Any  # tests/conftest.py's LiveDaemon (conftest is not importable)
TOKEN = "s3cret"  # noqa: S105 (the test daemon's token)


def closed_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def selfheal(
    url: str, *args: str, env: Mapping[str, str] | None = None
) -> Result:
    """Run `selfheal ARGS --url URL` in-process; never an uncaught error."""
    result = CliRunner().invoke(
        app,
        [*args, "--url", url],
        env={"COLUMNS": "200", **(env or {})},
    )
    if result.exception is not None and not isinstance(
        result.exception, SystemExit
    ):
        raise result.exception
    return result


def selfheal_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console script, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "selfhealing", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("SELFHEAL_")
            },
            "COLUMNS": "200",
        },
    )


def fail(*_: object) -> None:
    raise RuntimeError("boom")


def trip(live: LiveDaemon, name: str, calls: int, **settings: Any) -> None:
    """Make *calls* failing calls through breaker *name* on the daemon."""

    def run() -> None:
        breaker = live.runtime.registry.get_or_create(name, **settings)
        for _ in range(calls):
            with contextlib.suppress(RuntimeError, CircuitOpenError):
                breaker.call(fail)

    live.on_loop(run)


def add_tasks(live: LiveDaemon, count: int, prefix: str = "job") -> None:
    """Register *count* hourly no-op tasks on the daemon."""

    def run() -> None:
        for i in range(count):
            live.runtime.tasks.register_interval(
                f"{prefix}-{i}", lambda: None, 3600
            )

    live.on_loop(run)


def go_dormant(live: LiveDaemon, reason: str = "drill") -> None:
    live.on_loop(lambda: live.runtime.engine.enter_dormant(reason))


def fail_healing(live: LiveDaemon) -> None:
    """Drive one failed healing attempt through the daemon's engine."""

    async def heal() -> bool:
        return False

    for _ in range(1000):  # past a sub-microsecond backoff
        result = asyncio.run_coroutine_threadsafe(
            live.runtime.engine.attempt("web", heal), live.loop
        ).result(10)
        if result.attempted:
            return
    raise AssertionError("the engine never attempted")


def events_of(live: LiveDaemon) -> None:
    """Wait until the audit trail holds every event published so far."""
    assert live.runtime.audit.flush(5)


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's own SELFHEAL_* variables never leak into a test."""
    monkeypatch.delenv("SELFHEAL_URL", raising=False)
    monkeypatch.delenv("SELFHEAL_ADMIN_TOKEN", raising=False)


@pytest.fixture(name="fast_daemon")
def _fast_daemon(start_live: Callable[..., LiveDaemon]) -> LiveDaemon:
    """A daemon whose backoff is negligible, to fail attempts in a row."""
    return start_live({"engine": {"backoff_base": 1e-6, "backoff_max": 1e-6}})


@pytest.fixture(name="sleeps")
def _sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace the CLI's sleep: it records the request and returns."""
    asked: list[float] = []
    monkeypatch.setattr(_client, "sleep", asked.append)
    return asked


class TestStatus:
    def test_healthy(self, live: LiveDaemon) -> None:
        """A healthy daemon prints its summary and exits 0."""
        result = selfheal(live.url, "status")
        assert 0 == result.exit_code
        for expected in (
            "HEALTHY",
            "enabled, active",
            "consecutive failures 0/10, backoff 5s",
            "attempts 0: 0 succeeded, 0 failed",
            "self-healing-main",
            "1 tasks (1 the daemon's own), 1 active: normal",
            "FEATURE_AUTO_HEALING_ENABLED",
            "Issues     none",
        ):
            assert expected in result.stdout

    def test_warning_on_task_overload(self, live: LiveDaemon) -> None:
        """More than 10 tasks is a warning: exit 1, the issue printed."""
        add_tasks(live, 11)
        result = selfheal(live.url, "status")
        assert 1 == result.exit_code
        assert "WARNING" in result.stdout
        assert "12 tasks (1 the daemon's own), 12 active: OVERLOAD" in (
            result.stdout
        )
        assert "WARNING: 11 background tasks registered" in result.stdout

    def test_critical_when_dormant(self, live: LiveDaemon) -> None:
        """Dormant is critical: exit 2, with the reason and the advice."""
        go_dormant(live)
        result = selfheal(live.url, "status")
        assert 2 == result.exit_code
        assert "CRITICAL" in result.stdout
        assert "DORMANT since" in result.stdout
        assert ": drill" in result.stdout
        assert "CRITICAL: Self-Healing Engine in DORMANT mode" in result.stdout
        assert "Call POST /api/system/heal/resume" in result.stdout

    def test_backoff_in_human_form(self, fast_daemon: LiveDaemon) -> None:
        """The failure streak and counters come from the engine."""
        fail_healing(fast_daemon)
        result = selfheal(fast_daemon.url, "status")
        assert "consecutive failures 1/10" in result.stdout
        assert "attempts 1: 0 succeeded, 1 failed" in result.stdout

    def test_unreachable(self) -> None:
        """No daemon: one line on stderr, exit 3, nothing on stdout."""
        url = closed_url()
        result = selfheal(url, "status")
        assert (3, "") == (result.exit_code, result.stdout)
        assert (
            f"selfheal: cannot reach the daemon at {url} (connection "
            "refused); is 'selfheal run' running?\n"
        ) == result.stderr

    def test_json_is_the_daemons_document(self, live: LiveDaemon) -> None:
        """--json prints what the daemon sent, and keeps the exit code."""
        go_dormant(live)
        result = selfheal(live.url, "status", "--json")
        printed = json.loads(result.stdout)
        sent = live.get("/api/status").json()
        printed.pop("timestamp")
        sent.pop("timestamp")
        assert (2, sent) == (result.exit_code, printed)

    def test_url_from_environment(self, live: LiveDaemon) -> None:
        """SELFHEAL_URL names the daemon when --url is not given."""
        result = CliRunner().invoke(
            app, ["status"], env={"SELFHEAL_URL": live.url}
        )
        assert 0 == result.exit_code

    def test_targets_and_processes_when_present(self) -> None:
        """Later sections (targets, processes) print when the keys exist."""
        console = Console(record=True, width=200)
        _status.render_status(
            console,
            {
                "status": "warning",
                "targets": [
                    {"name": "web", "health": "unhealthy", "lastCheck": "x"}
                ],
                "processes": [{"name": "web", "state": "running", "pid": 7}],
            },
        )
        text = console.export_text()
        assert "unhealthy" in text
        assert "running" in text


class TestHumanMs:
    @pytest.mark.parametrize(
        ("ms", "expected"),
        [
            (None, "-"),
            (250, "250ms"),
            (5000, "5s"),
            (1500, "1.5s"),
            (320000, "5m 20s"),
            (1_800_000, "30m"),
            (3_723_000, "1h 2m 3s"),
        ],
        ids=["none", "ms", "s", "fraction", "guide", "cap", "hours"],
    )
    def test_forms(self, ms: float | None, expected: str) -> None:
        """Backoff delays read like the guide: 320000 is 5m 20s."""
        assert expected == _status.human_ms(ms)


class TestResume:
    def test_resumes_when_dormant(self, live: LiveDaemon) -> None:
        """Resume leaves dormant mode and the status is healthy again."""
        go_dormant(live)
        result = selfheal(live.url, "resume", "--reason", "keys fixed")
        assert 0 == result.exit_code
        assert "resumed: Self-Healing Engine resumed" in result.stdout
        assert "consecutiveFailures 0, backoff 5s" in result.stdout
        assert not live.runtime.engine.is_dormant
        assert 0 == selfheal(live.url, "status").exit_code

    def test_not_dormant(self, live: LiveDaemon) -> None:
        """Not dormant is not an error: it says so and exits 0."""
        result = selfheal(live.url, "resume", "--reason", "just in case")
        assert (0, "not dormant, nothing to resume\n") == (
            result.exit_code,
            result.stdout,
        )

    def test_blank_reason_is_refused(self, live: LiveDaemon) -> None:
        """The daemon's validation message is printed; exit 4."""
        go_dormant(live)
        result = selfheal(live.url, "resume", "--reason", "   ")
        assert 4 == result.exit_code
        assert result.stderr.startswith("selfheal: ")
        assert "reason" in result.stderr
        assert live.runtime.engine.is_dormant


class TestBreakers:
    def test_list_is_the_default(self, live: LiveDaemon) -> None:
        """`selfheal breakers` and `breakers list` print the same table."""
        trip(live, "db", 1, failure_threshold=1)
        default = selfheal(live.url, "breakers")
        listed = selfheal(live.url, "breakers", "list")
        assert (0, 0) == (default.exit_code, listed.exit_code)
        assert default.stdout == listed.stdout
        assert "self-healing-main │ CLOSED" in listed.stdout
        assert "db                │ OPEN" in listed.stdout

    def test_list_json(self, live: LiveDaemon) -> None:
        """--json prints the daemon's list."""
        result = selfheal(live.url, "breakers", "list", "--json")
        assert live.get("/api/circuit-breakers").json() == json.loads(
            result.stdout
        )

    def test_reset_open(self, live: LiveDaemon) -> None:
        """An OPEN breaker resets to CLOSED."""
        trip(live, "db", 1, failure_threshold=1)
        result = selfheal(
            live.url, "breakers", "reset", "db", "--reason", "db is back"
        )
        assert 0 == result.exit_code
        assert "circuit breaker db reset: OPEN -> CLOSED\n" == result.stdout
        assert BreakerState.CLOSED == live.runtime.registry.get("db").state

    def test_permanent_open_needs_force(self, live: LiveDaemon) -> None:
        """Without --force: the daemon's message, a hint, exit 4."""
        trip(
            live,
            "db",
            2,
            failure_threshold=1,
            recovery_timeout=0,
            permanent_after_trips=1,
        )
        breaker = live.runtime.registry.get("db")
        assert BreakerState.PERMANENT_OPEN == breaker.state
        refused = selfheal(
            live.url, "breakers", "reset", "db", "--reason", "try"
        )
        assert 4 == refused.exit_code
        assert "circuit breaker db is PERMANENT_OPEN" in refused.stderr
        assert "hint: fix the root cause first, then add --force" in (
            refused.stderr
        )
        assert BreakerState.PERMANENT_OPEN == breaker.state
        forced = selfheal(
            live.url,
            "breakers",
            "reset",
            "db",
            "--reason",
            "root cause fixed",
            "--force",
        )
        assert 0 == forced.exit_code
        assert "PERMANENT_OPEN -> CLOSED" in forced.stdout
        assert BreakerState.CLOSED == breaker.state

    def test_reset_main_while_dormant_notes_resume(
        self, live: LiveDaemon
    ) -> None:
        """Resetting self-healing-main while dormant says to resume."""
        go_dormant(live)
        result = selfheal(
            live.url,
            "breakers",
            "reset",
            "self-healing-main",
            "--reason",
            "check",
        )
        assert 0 == result.exit_code
        assert "note: the engine is still DORMANT" in result.stdout

    def test_unknown_breaker(self, live: LiveDaemon) -> None:
        """An unknown name is the daemon's 404 message; exit 4."""
        result = selfheal(
            live.url, "breakers", "reset", "nope", "--reason", "x"
        )
        assert 4 == result.exit_code
        assert "unknown circuit breaker 'nope'" in result.stderr


class TestTasks:
    @pytest.mark.parametrize(
        ("count", "reading"),
        [(3, "normal"), (7, "caution"), (11, "OVERLOAD")],
        ids=["normal", "caution", "overload"],
    )
    def test_list_reads_thresholds(
        self, live: LiveDaemon, count: int, reading: str
    ) -> None:
        """The list ends with the guide's reading of the task count."""
        add_tasks(live, count)
        result = selfheal(live.url, "tasks")
        assert 0 == result.exit_code
        total = count + 1  # and the daemon's resource sampler
        assert (
            f"{total} tasks (1 the daemon's own), {total} active: {reading}"
            in result.stdout
        )
        assert "job-0" in result.stdout

    def test_duplicates_are_flagged(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Duplicate ids in a task list are named, with the guide's fix."""
        _control._print_tasks(
            {
                "totalTasks": 2,
                "activeTasks": 2,
                "tasks": [{"id": "poll"}, {"id": "poll"}],
            }
        )
        assert "duplicate task ids: poll; restart the daemon" in (
            capsys.readouterr().out
        )

    def test_list_json(self, live: LiveDaemon) -> None:
        """--json prints the daemon's task snapshot."""
        add_tasks(live, 2)
        result = selfheal(live.url, "tasks", "list", "--json")
        assert ["resources.sample", "job-0", "job-1"] == [
            t["id"] for t in json.loads(result.stdout)["tasks"]
        ]

    def test_pause_all_and_resume_all(self, live: LiveDaemon) -> None:
        """pause-all pauses every task; resume-all resumes them."""
        add_tasks(live, 3)
        paused = selfheal(
            live.url, "tasks", "pause-all", "--reason", "maintenance"
        )
        assert 0 == paused.exit_code
        assert "paused 4 tasks (now 4 tasks, 0 active)" in paused.stdout
        resumed = selfheal(live.url, "tasks", "resume-all")
        assert "resumed 4 tasks (now 4 tasks, 4 active)" in resumed.stdout

    def test_pause_and_resume_one(self, live: LiveDaemon) -> None:
        """One task pauses and resumes by id."""
        add_tasks(live, 2)
        selfheal(live.url, "tasks", "pause", "job-1", "--reason", "deploy")
        assert 2 == live.runtime.tasks.snapshot().active_tasks
        result = selfheal(live.url, "tasks", "resume", "job-1")
        assert "resumed task job-1 (now 3 tasks, 3 active)" in result.stdout

    def test_cleanup(self, live: LiveDaemon) -> None:
        """cleanup unregisters everything and says to restart."""
        add_tasks(live, 4)
        result = selfheal(live.url, "tasks", "cleanup", "--reason", "x")
        assert 0 == result.exit_code
        assert "cleaned up 5 tasks; restart the daemon" in result.stdout
        assert 0 == len(live.runtime.tasks)

    def test_rm(self, live: LiveDaemon) -> None:
        """rm unregisters one task."""
        add_tasks(live, 2)
        result = selfheal(live.url, "tasks", "rm", "job-0")
        assert 0 == result.exit_code
        assert "job-0" not in live.runtime.tasks

    def test_rm_unknown(self, live: LiveDaemon) -> None:
        """An unknown id: the daemon's message on stderr, exit 4."""
        result = selfheal(live.url, "tasks", "rm", "nope")
        assert (4, "") == (result.exit_code, result.stdout)
        assert "selfheal: unknown task 'nope'" in result.stderr


class TestFlags:
    def test_list(self, live: LiveDaemon) -> None:
        """Every flag with its value and source."""
        result = selfheal(live.url, "flags")
        assert 0 == result.exit_code
        assert "FEATURE_AUTO_HEALING_ENABLED       │ true  │ default" in (
            result.stdout
        )

    @pytest.mark.parametrize("word", ["false", "OFF", "0", "no"])
    def test_set(self, live: LiveDaemon, word: str) -> None:
        """A false-word becomes a runtime override the output explains."""
        result = selfheal(
            live.url, "flags", "set", AUTO_HEALING, word, "--reason", "inc 42"
        )
        assert 0 == result.exit_code
        assert (
            f"{AUTO_HEALING}=false (source api: a runtime override, gone "
            "at restart)"
        ) in result.stdout
        flag = live.runtime.flags.get(AUTO_HEALING)
        assert (False, "api") == (flag.enabled, str(flag.source))

    def test_set_is_strict(self, live: LiveDaemon) -> None:
        """A word that is not a boolean is a usage error; nothing sent."""
        result = selfheal(
            live.url, "flags", "set", AUTO_HEALING, "maybe", "--reason", "x"
        )
        assert 2 == result.exit_code
        assert "expected true/false, 1/0, yes/no or on/off" in result.stderr
        assert live.runtime.flags.get(AUTO_HEALING).enabled

    def test_set_unknown_flag(self, live: LiveDaemon) -> None:
        """An unknown flag name is the daemon's error; exit 4."""
        result = selfheal(
            live.url, "flags", "set", "FEATURE_NOPE", "on", "--reason", "x"
        )
        assert 4 == result.exit_code
        assert "FEATURE_NOPE" in result.stderr

    def test_reload(self, live: LiveDaemon) -> None:
        """reload picks up .env.local in the daemon's directory."""
        (live.runtime.directory / ".env.local").write_text(
            f"{PREVENTIVE_HEALING}=false\n"
        )
        result = selfheal(live.url, "flags", "reload")
        assert 0 == result.exit_code
        row = f"{PREVENTIVE_HEALING} │ false │ .env.local"
        assert row in result.stdout
        assert not live.runtime.flags.get(PREVENTIVE_HEALING).enabled

    def test_reload_invalid_value(self, live: LiveDaemon) -> None:
        """An invalid line is reported, the old value kept, exit 1."""
        (live.runtime.directory / ".env.local").write_text(
            f"{PREVENTIVE_HEALING}=perhaps\n"
        )
        result = selfheal(live.url, "flags", "reload")
        assert 1 == result.exit_code
        assert "is not a boolean" in result.stdout
        assert live.runtime.flags.get(PREVENTIVE_HEALING).enabled


class TestEvents:
    def test_shows_resume_with_actor_and_reason(
        self, live: LiveDaemon
    ) -> None:
        """The resume just done is listed with who did it and why."""
        go_dormant(live)
        selfheal(live.url, "resume", "--reason", "Valid API keys added")
        events_of(live)
        result = selfheal(
            live.url, "events", "--kind", "engine.dormant_exited"
        )
        assert 0 == result.exit_code
        [line] = result.stdout.splitlines()
        assert "engine.dormant_exited" in line
        assert f"by {getpass.getuser()}@{socket.gethostname()}" in line
        assert "reason: Valid API keys added" in line

    def test_json_lines(self, live: LiveDaemon) -> None:
        """--json prints one event object per line."""
        go_dormant(live)
        events_of(live)
        result = selfheal(live.url, "events", "--json", "--kind", "engine.*")
        kinds = [json.loads(x)["kind"] for x in result.stdout.splitlines()]
        assert ["engine.dormant_entered"] == kinds

    def test_since_id(self, live: LiveDaemon) -> None:
        """--since ID lists only later events."""
        go_dormant(live)
        selfheal(live.url, "resume", "--reason", "fixed")
        events_of(live)
        every = selfheal(live.url, "events", "--json").stdout.splitlines()
        first = json.loads(every[0])["id"]
        later = selfheal(live.url, "events", "--since", str(first), "--json")
        assert every[1:] == later.stdout.splitlines()

    def test_since_time(self, live: LiveDaemon) -> None:
        """--since with an ISO time lists events from then on."""
        go_dormant(live)
        events_of(live)
        old = selfheal(
            live.url,
            "events",
            "--since",
            "2000-01-01T00:00:00Z",
            "--kind",
            "engine.",
        )
        new = selfheal(live.url, "events", "--since", "2999-01-01T00:00:00Z")
        assert 1 == len(old.stdout.splitlines())
        assert (0, "") == (new.exit_code, new.stdout)

    def test_follow_prints_new_events(
        self, live: LiveDaemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--follow polls from the last id and prints what is new."""
        go_dormant(live)
        events_of(live)

        def meanwhile(seconds: float) -> None:
            assert 1.0 == seconds
            live.on_loop(
                lambda: live.runtime.engine.resume_from_dormant("polled")
            )
            events_of(live)

        monkeypatch.setattr(_client, "sleep", meanwhile)
        result = selfheal(live.url, "events", "--follow", "--max-polls", "2")
        assert 0 == result.exit_code
        kinds = [
            kind
            for line in result.stdout.splitlines()
            if (kind := line.split()[2]) != "task.registered"
        ]
        assert [
            "engine.dormant_entered",
            "breaker.reset",
            "engine.dormant_exited",
        ] == kinds

    def test_follow_stops_on_ctrl_c(
        self, live: LiveDaemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl+C ends --follow with exit 0 and no traceback."""

        def interrupt(_: float) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(_client, "sleep", interrupt)
        result = selfheal(live.url, "events", "--follow")
        assert (0, "") == (result.exit_code, result.stderr)

    def test_unreachable(self) -> None:
        """No daemon: exit 3."""
        assert 3 == selfheal(closed_url(), "events").exit_code


def headline(result: Result) -> str:
    """The first line of `watch`'s summary."""
    return next(
        line
        for line in result.stdout.splitlines()
        if line.startswith(("watch ended:", "watch stopped early:"))
    )


class TestWatch:
    def test_rising_failures(
        self, fast_daemon: LiveDaemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Failures rising between samples are shouted; exit: worst seen."""
        asked: list[float] = []

        def meanwhile(seconds: float) -> None:
            asked.append(seconds)
            fail_healing(fast_daemon)

        monkeypatch.setattr(_client, "sleep", meanwhile)
        result = selfheal(
            fast_daemon.url, "watch", "--minutes", "5", "--interval", "60"
        )
        assert 1 == result.exit_code  # 5 failures: a warning
        lines = result.stdout.splitlines()
        samples = [x.split(" ", 1)[1] for x in lines if " status=" in x]
        assert [
            f"status={status} consecutiveFailures={n}"
            for status, n in [("healthy", 0)]
            + [("healthy", n) for n in range(1, 5)]
            + [("warning", 5)]
        ] == samples
        assert (
            "WARNING: consecutiveFailures rising: 0 -> 1 -> 2; go back to "
            "step 2 (find the root cause)"
        ) in lines
        assert (
            "watch ended: 6 samples (0 unreachable), worst status warning, "
            "consecutiveFailures 0 -> 5"
        ) == headline(result)
        assert 5 == len(asked)
        assert all(0 < s <= 60 for s in asked)

    def test_steady(self, live: LiveDaemon, sleeps: list[float]) -> None:
        """Nothing rising: one line per sample, the summary, exit 0."""
        result = selfheal(
            live.url, "watch", "--minutes", "2", "--interval", "60"
        )
        assert 0 == result.exit_code
        lines = result.stdout.splitlines()
        assert lines[0].startswith("watching ")
        assert 3 * [" status=healthy consecutiveFailures=0"] == [
            line[8:] for line in lines[1:4]
        ]
        assert headline(result) == lines[4]
        assert "rising" not in result.stdout
        assert 2 == len(sleeps)

    def test_critical_and_dormant(
        self, live: LiveDaemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Turning critical and dormant is warned about; exit 2."""
        monkeypatch.setattr(_client, "sleep", lambda _: go_dormant(live))
        result = selfheal(
            live.url, "watch", "--minutes", "1", "--interval", "60"
        )
        assert 2 == result.exit_code
        assert (
            "WARNING: status turned critical: CRITICAL: Self-Healing Engine "
            "in DORMANT mode"
        ) in result.stdout
        assert "WARNING: the engine is DORMANT (drill)" in result.stdout

    def test_ctrl_c_prints_summary(
        self, live: LiveDaemon, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl+C ends the watch early, with its summary."""

        def interrupt(_: float) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(_client, "sleep", interrupt)
        result = selfheal(live.url, "watch")
        assert 0 == result.exit_code
        assert (
            "watch stopped early: 1 sample (0 unreachable), worst status "
            "healthy, consecutiveFailures 0 -> 0"
        ) == headline(result)

    def test_unreachable_throughout(self, sleeps: list[float]) -> None:
        """Never reachable: each sample says so, exit 3."""
        result = selfheal(
            closed_url(), "watch", "--minutes", "1", "--interval", "30"
        )
        assert 3 == result.exit_code
        assert 3 == result.stdout.count("unreachable (connection refused)")


class TestAuth:
    @pytest.fixture(name="guarded")
    def _guarded(self, start_live: Callable[..., LiveDaemon]) -> LiveDaemon:
        daemon = start_live(environ={"SELFHEAL_ADMIN_TOKEN": TOKEN})
        go_dormant(daemon)
        return daemon

    def test_resume_without_token(self, guarded: LiveDaemon) -> None:
        """No token: the daemon's 401 message and a hint; exit 4."""
        result = selfheal(guarded.url, "resume", "--reason", "fixed")
        assert 4 == result.exit_code
        assert "hint: pass --token TOKEN or set SELFHEAL_ADMIN_TOKEN" in (
            result.stderr
        )
        assert guarded.runtime.engine.is_dormant

    def test_resume_with_token(self, guarded: LiveDaemon) -> None:
        """--token works, and the token appears in no output."""
        result = selfheal(
            guarded.url, "resume", "--reason", "fixed", "--token", TOKEN
        )
        assert 0 == result.exit_code
        assert not guarded.runtime.engine.is_dormant
        assert TOKEN not in result.output

    def test_token_from_environment(self, guarded: LiveDaemon) -> None:
        """SELFHEAL_ADMIN_TOKEN is used when --token is not given."""
        result = selfheal(
            guarded.url,
            "resume",
            "--reason",
            "fixed",
            env={"SELFHEAL_ADMIN_TOKEN": TOKEN},
        )
        assert 0 == result.exit_code
        assert TOKEN not in result.output

    def test_group_token(self, guarded: LiveDaemon) -> None:
        """A group's --token reaches its commands."""
        add_tasks(guarded, 1)
        result = CliRunner().invoke(
            app,
            ["tasks", "--url", guarded.url, "--token", TOKEN, "pause-all"],
        )
        assert 0 == result.exit_code
        assert "paused 2 tasks" in result.stdout
        assert TOKEN not in result.output

    def test_wrong_token(self, guarded: LiveDaemon) -> None:
        """A wrong token is refused; neither token is printed."""
        result = selfheal(
            guarded.url, "flags", "reload", "--token", "wrong-guess"
        )
        assert 4 == result.exit_code
        assert "wrong-guess" not in result.output

    def test_help_never_shows_the_token(self) -> None:
        """--help with the token in the environment does not print it."""
        result = CliRunner().invoke(
            app, ["resume", "--help"], env={"SELFHEAL_ADMIN_TOKEN": TOKEN}
        )
        assert 0 == result.exit_code
        assert TOKEN not in result.output


COMMANDS = [
    ("status",),
    ("watch",),
    ("resume",),
    ("events",),
    ("breakers",),
    ("breakers", "list"),
    ("breakers", "reset"),
    ("tasks",),
    ("tasks", "list"),
    ("tasks", "pause-all"),
    ("tasks", "resume-all"),
    ("tasks", "cleanup"),
    ("tasks", "pause"),
    ("tasks", "resume"),
    ("tasks", "rm"),
    ("flags",),
    ("flags", "list"),
    ("flags", "set"),
    ("flags", "reload"),
]


class TestHelp:
    @pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
    def test_example(self, command: tuple[str, ...]) -> None:
        """Every operator command's --help shows an example."""
        result = CliRunner().invoke(app, [*command, "--help"])
        assert 0 == result.exit_code
        assert "Example:" in result.stdout


class TestConsoleScript:
    def test_status_exit_codes(self, live: LiveDaemon) -> None:
        """The real `selfheal status` exits 0 healthy, 2 critical."""
        healthy = selfheal_process("status", "--url", live.url)
        go_dormant(live)
        critical = selfheal_process("status", "--json", "--url", live.url)
        assert (0, 2) == (healthy.returncode, critical.returncode)
        assert "critical" == json.loads(critical.stdout)["status"]

    def test_unreachable(self) -> None:
        """The real script: exit 3, one line, no traceback."""
        done = selfheal_process("events", "--url", closed_url())
        assert (3, 1) == (done.returncode, len(done.stderr.splitlines()))
        assert "Traceback" not in done.stderr

    def test_daemon_error(self, live: LiveDaemon) -> None:
        """The real script: a refused reset exits 4 with the message."""
        trip(
            live,
            "db",
            2,
            failure_threshold=1,
            recovery_timeout=0,
            permanent_after_trips=1,
        )
        done = selfheal_process(
            "breakers", "reset", "db", "--reason", "x", "--url", live.url
        )
        assert 4 == done.returncode
        assert "PERMANENT_OPEN" in done.stderr
        assert "Traceback" not in done.stderr
