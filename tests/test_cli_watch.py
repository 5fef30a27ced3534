"""``selfheal watch``: lines in a pipe, a live view on a terminal, and the
summary of what changed, against a daemon driven between samples."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from rich.console import Console
from typer.testing import CliRunner, Result

from selfhealing.checks import CallableCheck
from selfhealing.cli import _client, _watch, app
from selfhealing.cli._status import local_time
from selfhealing.cli._watch import Trend, render_view, sparkline
from selfhealing.exceptions import CircuitOpenError
from selfhealing.targets import Target
from selfhealing.testing import FakeClock


LiveDaemon = Any  # tests/conftest.py's LiveDaemon (conftest is not importable)
Step = Callable[[], None]


def selfheal(url: str, *args: str) -> Result:
    """Run `selfheal watch ARGS --url URL` in-process, not on a terminal."""
    result = CliRunner().invoke(
        app, ["watch", *args, "--url", url], env={"COLUMNS": "200"}
    )
    if result.exception is not None and not isinstance(
        result.exception, SystemExit
    ):
        raise result.exception
    return result


def hms(clock: FakeClock, at: float) -> str:
    """The local HH:MM:SS that `watch` prints for monotonic second *at*."""
    return local_time(clock.time() - clock.monotonic() + at, "%H:%M:%S")


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


def trip(live: LiveDaemon, name: str) -> None:
    """Open breaker *name* on the daemon with one failing call."""

    def fail() -> None:
        raise RuntimeError("boom")

    def run() -> None:
        breaker = live.runtime.registry.get_or_create(
            name, failure_threshold=1
        )
        with contextlib.suppress(RuntimeError, CircuitOpenError):
            breaker.call(fail)

    live.on_loop(run)


def go_dormant(live: LiveDaemon, reason: str = "drill") -> None:
    """Put the daemon's engine in dormant mode."""
    live.on_loop(lambda: live.runtime.engine.enter_dormant(reason))


def resume(live: LiveDaemon, reason: str) -> None:
    """Resume the daemon's engine from dormant mode."""
    live.on_loop(lambda: live.runtime.engine.resume_from_dormant(reason))


def watched_target(live: LiveDaemon) -> Callable[[bool], None]:
    """Add target "web" (probed by hand only); returns "probe it as X"."""
    service = {"healthy": True}

    async def check() -> bool:
        return service["healthy"]

    def add() -> Target:
        target = Target(
            "web",
            CallableCheck(check, name="web"),
            [],  # nothing to climb: no healing starts
            engine=live.runtime.engine,
            breaker=live.runtime.registry.get_or_create("target:web"),
            interval=3600,
            initial_delay=3600,
            failure_threshold=1,
        )
        live.runtime.add_target(target)
        return target

    target = live.on_loop(add)

    def probe(healthy: bool) -> None:
        service["healthy"] = healthy
        asyncio.run_coroutine_threadsafe(target.probe(), live.loop).result(10)

    return probe


def engine(failures: int = 0, **fields: Any) -> dict[str, Any]:
    """A ``selfHealing`` section of a status document."""
    return {
        "enabled": True,
        "isDormant": False,
        "consecutiveFailures": failures,
        "maxConsecutiveFailures": 10,
        "backoffDelay": 5000,
        "totalAttempts": 0,
        "successfulHealings": 0,
        "failedHealings": 0,
        **fields,
    }


def document(
    status: str = "healthy",
    *,
    failures: int = 0,
    breakers: Mapping[str, str] | None = None,
    targets: Mapping[str, str] | None = None,
    **engine_fields: Any,
) -> dict[str, Any]:
    """A status document with just what `watch` reads."""
    return {
        "status": status,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "selfHealing": engine(failures, **engine_fields),
        "circuitBreakers": [
            {"name": n, "state": s, "failureCount": 0, "tripCount": 0}
            for n, s in (breakers or {}).items()
        ],
        "backgroundTasks": {"totalTasks": 4, "activeTasks": 4},
        "llm": {"keyManagement": {"totalKeys": 2, "activeKeys": 1}},
        "targets": [
            {"name": n, "health": h} for n, h in (targets or {}).items()
        ],
        "issues": [],
        "recommendations": [],
    }


def trend_of(*documents: dict[str, Any]) -> Trend:
    """A trend of *documents*, one a minute from 12:00 UTC."""
    trend = Trend()
    for minute, doc in enumerate(documents):
        trend.add(doc, 1_767_268_800.0 + 60 * minute)
    return trend


def at(minute: int) -> str:
    """What `watch` prints for *minute* minutes after 12:00 UTC."""
    return local_time(1_767_268_800.0 + 60 * minute, "%H:%M:%S")


def terminal() -> Console:
    """A recording console that takes itself for an interactive terminal."""
    return Console(
        file=io.StringIO(),
        force_terminal=True,
        force_interactive=True,
        record=True,
        width=100,
    )


def view(trend: Trend, **header: Any) -> str:
    """*trend* as the live view draws it, as plain text."""
    console = Console(
        file=io.StringIO(), force_terminal=True, record=True, width=100
    )
    console.print(
        render_view(
            trend,
            url=header.pop("url", "http://127.0.0.1:3001"),
            elapsed=header.pop("elapsed", 60),
            minutes=header.pop("minutes", 30),
            count=header.pop("count", 31),
            note=header.pop("note", "next sample in 42s"),
            **header,
        )
    )
    return console.export_text()


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's own SELFHEAL_* variables never leak into a test."""
    monkeypatch.delenv("SELFHEAL_URL", raising=False)
    monkeypatch.delenv("SELFHEAL_ADMIN_TOKEN", raising=False)


@pytest.fixture(name="clock")
def _clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """`watch`'s clock, moved only by its sleeps."""
    clock = FakeClock()
    monkeypatch.setattr(_watch, "system_clock", clock)
    return clock


@pytest.fixture(name="fast_daemon")
def _fast_daemon(start_live: Callable[..., LiveDaemon]) -> LiveDaemon:
    """A daemon whose backoff is negligible, to fail attempts in a row."""
    return start_live({"engine": {"backoff_base": 1e-6, "backoff_max": 1e-6}})


@pytest.fixture(name="script")
def _script(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> Iterator[Callable[..., list[float]]]:
    """Make `watch` run *steps* in its sleeps, one a sleep, as time passes.

    Returns the sleeps asked for. Every step must have run by the end.
    """
    asked: list[float] = []
    pending: list[Step] = []

    def sleep(seconds: float) -> None:
        asked.append(seconds)
        clock.advance(seconds)
        if pending:
            pending.pop(0)()

    def script(*steps: Step) -> list[float]:
        pending.extend(steps)
        monkeypatch.setattr(_client, "sleep", sleep)
        return asked

    yield script
    assert [] == pending


class TestLines:
    def test_a_relapse_in_a_pipe(
        self,
        fast_daemon: LiveDaemon,
        clock: FakeClock,
        script: Callable[..., list[float]],
    ) -> None:
        """Not on a terminal: a line a sample, warnings, and what changed."""
        live = fast_daemon
        probe = watched_target(live)
        probe(True)
        script(
            lambda: fail_healing(live),
            lambda: fail_healing(live),
            lambda: trip(live, "db"),
            lambda: probe(False),
            lambda: go_dormant(live),
            lambda: resume(live, "root cause fixed"),
        )
        result = selfheal(live.url, "--minutes", "6", "--interval", "60")
        assert 2 == result.exit_code  # critical while dormant
        assert [
            (
                f"watching {live.url} every 60s for 6 min (7 samples); "
                "Ctrl+C stops"
            ),
            f"{hms(clock, 0)} status=healthy consecutiveFailures=0",
            f"{hms(clock, 60)} status=healthy consecutiveFailures=1",
            (
                "WARNING: consecutiveFailures rising: 0 -> 1; go back to step 2 "
                "(find the root cause)"
            ),
            f"{hms(clock, 120)} status=healthy consecutiveFailures=2",
            (
                "WARNING: consecutiveFailures rising: 0 -> 1 -> 2; go back to "
                "step 2 (find the root cause)"
            ),
            f"{hms(clock, 180)} status=warning consecutiveFailures=2",
            f"{hms(clock, 240)} status=warning consecutiveFailures=2",
            f"{hms(clock, 300)} status=critical consecutiveFailures=2 DORMANT",
            (
                "WARNING: status turned critical: CRITICAL: Self-Healing Engine "
                "in DORMANT mode; WARNING: Circuit breaker db is OPEN; WARNING: "
                "Target web is unhealthy (returned False)"
            ),
            (
                "WARNING: the engine is DORMANT (drill); fix the root cause, "
                "then: selfheal resume --reason TEXT"
            ),
            f"{hms(clock, 360)} status=warning consecutiveFailures=0",
            (
                "watch ended: 7 samples (0 unreachable), worst status critical, "
                "consecutiveFailures 0 -> 0"
            ),
            (
                "  status:              healthy -> warning, worst critical at "
                f"{hms(clock, 300)}"
            ),
            "  consecutiveFailures: 0 -> 0 (max 2)",
            (
                f"  dormant:             entered at {hms(clock, 300)} (drill), "
                f"left at {hms(clock, 360)} (root cause fixed)"
            ),
            "  breakers:            db: absent -> OPEN",
            "  targets:             web: healthy -> unhealthy",
            "  healing:             attempts +2, succeeded +0, failed +2",
        ] == result.stdout.splitlines()

    def test_one_request_per_interval(
        self, live: LiveDaemon, script: Callable[..., list[float]]
    ) -> None:
        """Not on a terminal, watch sleeps once between two samples."""
        asked = script()
        result = selfheal(live.url, "--minutes", "3", "--interval", "60")
        assert 0 == result.exit_code
        assert [60.0, 60.0, 60.0] == asked
        assert 4 == result.stdout.count(" status=healthy ")

    def test_steady_summary(
        self, live: LiveDaemon, script: Callable[..., list[float]]
    ) -> None:
        """Nothing happening reads as nothing changed."""
        script()
        result = selfheal(live.url, "--minutes", "1", "--interval", "60")
        assert [
            "  consecutiveFailures: 0 -> 0 (max 0)",
            "  dormant:             never",
            "  breakers:            no change",
            "  targets:             none",
            "  healing:             attempts +0, succeeded +0, failed +0",
        ] == result.stdout.splitlines()[-5:]

    def test_never_answered(self, script: Callable[..., list[float]]) -> None:
        """Without an answer there is nothing to compare: the headline
        alone, exit 3."""
        script()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = selfheal(url, "--minutes", "1", "--interval", "60")
        assert 3 == result.exit_code
        assert (
            "watch ended: 2 samples (2 unreachable), worst status unknown "
            "(no answer), consecutiveFailures -"
        ) == result.stdout.splitlines()[-1]


class TestTerminal:
    def test_live_view_and_summary(
        self,
        fast_daemon: LiveDaemon,
        monkeypatch: pytest.MonkeyPatch,
        script: Callable[..., list[float]],
    ) -> None:
        """On a terminal: one view redrawn in place (no sample lines), the
        banner while failures rise, then the summary."""
        live = fast_daemon
        console = terminal()
        monkeypatch.setattr(_watch, "stdout", lambda: console)
        script(*[lambda: fail_healing(live)] * 2)
        result = selfheal(live.url, "--minutes", "0.04", "--interval", "1")
        assert 0 == result.exit_code
        raw = console.file.getvalue()  # type: ignore[attr-defined]
        text = console.export_text()
        assert "" == result.stdout  # everything went to the terminal
        assert "\x1b[1A\x1b[2K" in raw  # redrawn in place: up, erase
        assert " status=" not in text
        assert f"selfheal watch {live.url}\n" in text
        assert "elapsed 00:02 of 00:02  sample 3 of 3  done\n" in text
        assert "0 → 1 → 2  ▁▅█  (dormant at 10)" in text
        assert (
            "consecutiveFailures rising: 0 -> 1 -> 2; go back to step 2 "
            "(find the root cause)"
        ) in text
        assert "│ self-healing-main │ CLOSED │ 2        │ 0     │" in text
        summary = text[text.index("watch ended: 3 samples") :].splitlines()
        assert [
            (
                "watch ended: 3 samples (0 unreachable), worst status healthy, "
                "consecutiveFailures 0 -> 2"
            ),
            "  consecutiveFailures: 0 -> 2 (max 2)",
            "  healing:             attempts +2, succeeded +0, failed +2",
        ] == [summary[0], summary[2], summary[6]]

    def test_countdown_ticks_every_second(
        self,
        live: LiveDaemon,
        monkeypatch: pytest.MonkeyPatch,
        script: Callable[..., list[float]],
    ) -> None:
        """The countdown is redrawn each second; the daemon is asked once
        per interval."""
        console = terminal()
        monkeypatch.setattr(_watch, "stdout", lambda: console)
        requests: list[str] = []
        get = _client.DaemonClient.get

        def counted(client: _client.DaemonClient, path: str) -> Any:
            requests.append(path)
            return get(client, path)

        monkeypatch.setattr(_client.DaemonClient, "get", counted)
        asked = script()
        result = selfheal(live.url, "--minutes", "0.1", "--interval", "3")
        assert 0 == result.exit_code
        assert 3 * ["/api/status"] == requests
        assert 6 * [1.0] == asked
        text = console.export_text()
        assert [3, 2, 1, 3, 2, 1] == [
            int(line.split("next sample in ")[1].rstrip("s "))
            for line in text.splitlines()
            if "next sample in" in line
        ]

    def test_ctrl_c(
        self,
        live: LiveDaemon,
        monkeypatch: pytest.MonkeyPatch,
        clock: FakeClock,
    ) -> None:
        """Ctrl+C ends the view, which says so, and prints the summary."""
        console = terminal()
        monkeypatch.setattr(_watch, "stdout", lambda: console)

        def interrupt(_: float) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(_client, "sleep", interrupt)
        result = selfheal(live.url)
        assert 0 == result.exit_code
        text = console.export_text()
        assert (
            "elapsed 00:00 of 30:00  sample 1 of 31  stopped early (Ctrl+C)\n"
        ) in text
        assert (
            "watch stopped early: 1 sample (0 unreachable), worst status "
            "healthy, consecutiveFailures 0 -> 0"
        ) in text.splitlines()


class TestView:
    def test_header_status_engine_and_counts(self) -> None:
        """The view shows where, how far, the status, engine and counts."""
        trend = trend_of(
            document(
                "warning",
                failures=3,
                breakers={"self-healing-main": "CLOSED"},
                backoffDelay=320_000,
                totalAttempts=3,
                failedHealings=3,
            )
            | {
                "issues": ["WARNING: something slow"],
                "recommendations": ["look at it"],
            }
        )
        text = view(trend, elapsed=125, note="next sample in 42s")
        assert text.startswith(
            "selfheal watch http://127.0.0.1:3001\n"
            "elapsed 02:05 of 30:00  sample 1 of 31  next sample in 42s\n"
        )
        assert "Status     WARNING  (2026-01-01T00:00:00.000Z)" in text
        assert "  - WARNING: something slow" in text
        assert "  -> look at it" in text
        assert "Engine     enabled, active" in text
        assert "Failures   3  █  (dormant at 10)" in text
        assert "Backoff    5m 20s" in text
        assert "Healing    attempts 3: 0 succeeded, 3 failed" in text
        assert "│ self-healing-main │ CLOSED │" in text
        assert "Tasks      4 tasks, 4 active: normal" in text
        assert "Keys       2 total, 1 active, - failed" in text
        assert "WARNING" not in text.split("Status")[0]  # no banner

    def test_rising_banner(self) -> None:
        """While consecutiveFailures rises, the view shouts the guide's
        sequence and step."""
        trend = trend_of(*(document(failures=n) for n in (0, 0, 1, 2)))
        text = view(trend)
        assert "╭─ WARNING" in text
        assert (
            "consecutiveFailures rising: 0 -> 1 -> 2; go back to step 2 "
            "(find the root cause)"
        ) in text
        assert "Failures   0 → 0 → 1 → 2  ▁▁▅█" in text

    def test_banner_ends_when_failures_stop_rising(self) -> None:
        """A steady count, even above zero, is not a rise."""
        trend = trend_of(*(document(failures=n) for n in (0, 1, 1)))
        assert "rising" not in view(trend)

    def test_critical_and_dormant_banner(self) -> None:
        """A critical status and dormant engine are in the banner too."""
        trend = trend_of(
            document(
                isDormant=True,
                dormantReason="drill",
                dormantSince="2026-01-01T00:00:00.000Z",
            )
            | {
                "status": "critical",
                "issues": [
                    "CRITICAL: Self-Healing Engine in DORMANT mode",
                    "WARNING: minor",
                ],
            }
        )
        text = view(trend)
        assert "status CRITICAL: Self-Healing Engine in DORMANT mode" in text
        assert (
            "engine DORMANT (drill): fix the root cause, then: selfheal "
            "resume --reason TEXT"
        ) in text
        assert (
            "Engine     enabled, DORMANT since 2026-01-01T00:00:00.000Z: drill"
        ) in text

    def test_targets_and_processes(self) -> None:
        """Targets show health and latency; processes state and restarts."""
        doc = document() | {
            "targets": [
                {
                    "name": "web",
                    "health": "unhealthy",
                    "latencyMs": 250,
                    "consecutiveFailures": 3,
                    "detail": "HTTP 503",
                }
            ],
            "processes": [
                {"name": "web", "state": "running", "pid": 7, "restarts": 2}
            ],
        }
        text = view(trend_of(doc))
        assert "│ web  │ unhealthy │ 250ms   │ 3        │ HTTP 503 │" in text
        assert "│ web  │ running │ 7   │ 2        │" in text

    def test_no_targets_no_tables(self) -> None:
        """Sections the daemon lacks are left out."""
        text = view(trend_of(document()))
        assert "Targets" not in text
        assert "Processes" not in text
        assert "Circuit breakers" not in text

    def test_unreachable(self) -> None:
        """A sample without an answer says so and keeps the last answer."""
        trend = trend_of(document(failures=1))
        trend.miss("connection refused", 1_767_268_860.0)
        text = view(trend)
        assert (
            f"daemon unreachable at {at(1)} (connection refused); showing "
            f"the answer from {at(0)}"
        ) in text
        assert "Failures   1" in text

    def test_before_any_answer(self) -> None:
        """Until the daemon answers, the view waits."""
        trend = Trend()
        trend.miss("connection refused", 1_767_268_800.0)
        text = view(trend, note="next sample in 5s")
        assert "no answer from the daemon yet" in text
        assert f"daemon unreachable at {at(0)} (connection refused)" in text

    def test_long_sequences_keep_the_latest(self) -> None:
        """Only the latest dozen failures are spelled out."""
        trend = trend_of(*(document(failures=n) for n in range(15)))
        assert "Failures   … 3 → 4 → 5" in view(trend)

    def test_ascii(self) -> None:
        """Without Unicode the arrows and bars are plain ASCII."""
        trend = trend_of(*(document(failures=n) for n in (0, 2)))
        assert "Failures   0 -> 2  _@" in view(trend, unicode=False)


class TestSparkline:
    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            ([], ""),
            ([0, 0, 0], "▁▁▁"),
            ([0, 1, 2, 3, 4, 5, 6, 7], "▁▂▃▄▅▆▇█"),
            ([5, 10], "▅█"),
        ],
        ids=["empty", "flat", "ramp", "relative"],
    )
    def test_bars(self, values: list[int], expected: str) -> None:
        """Bars run from zero to the highest value shown."""
        assert expected == sparkline(values)

    def test_latest_thirty(self) -> None:
        """Only the latest thirty values are drawn (and scaled)."""
        assert 30 * "▁" == sparkline([100] + 30 * [0])


class TestChanges:
    def test_breaker_going_open(self) -> None:
        """A breaker's states are followed from first to last."""
        trend = trend_of(
            document(breakers={"db": "CLOSED", "main": "CLOSED"}),
            document(breakers={"db": "OPEN", "main": "CLOSED"}),
            document(breakers={"db": "HALF_OPEN", "main": "CLOSED"}),
        )
        assert (
            "breakers",
            "db: CLOSED -> OPEN -> HALF_OPEN",
        ) in trend.changes()

    def test_breakers_created_and_removed(self) -> None:
        """Breakers appearing or disappearing mid-watch say so."""
        trend = trend_of(
            document(breakers={"old": "CLOSED"}),
            document(breakers={"new": "OPEN"}),
        )
        assert (
            "breakers",
            "old: CLOSED -> absent; new: absent -> OPEN",
        ) in trend.changes()

    def test_target_turning_unhealthy(self) -> None:
        """A target's health change is reported; steady ones are not."""
        trend = trend_of(
            document(targets={"web": "healthy", "db": "healthy"}),
            document(targets={"web": "unhealthy", "db": "healthy"}),
        )
        assert ("targets", "web: healthy -> unhealthy") in trend.changes()

    def test_dormant_entered_then_resumed(self) -> None:
        """Entering and leaving dormant mode are both reported, with why."""
        trend = trend_of(
            document(),
            document("critical", isDormant=True, dormantReason="drill"),
            document(lastResume={"reason": "keys restored"}),
        )
        assert (
            "dormant",
            f"entered at {at(1)} (drill), left at {at(2)} (keys restored)",
        ) in trend.changes()

    @pytest.mark.parametrize(
        ("dormant", "expected"),
        [
            ([True, True], "throughout (drill)"),
            ([True, False], "at start (drill), left at {1}"),
            ([False, False], "never"),
        ],
        ids=["throughout", "at-start", "never"],
    )
    def test_dormant_forms(self, dormant: list[bool], expected: str) -> None:
        """Dormant from the start, throughout, or never."""
        trend = trend_of(
            *(document(isDormant=d, dormantReason="drill") for d in dormant)
        )
        assert ("dormant", expected.format(at(0), at(1))) in trend.changes()

    def test_worst_status_and_when(self) -> None:
        """The worst status is the first sample that reached it."""
        trend = trend_of(
            document("healthy"),
            document("warning"),
            document("critical"),
            document("critical"),
            document("warning"),
        )
        assert (
            "status",
            f"healthy -> warning, worst critical at {at(2)}",
        ) in trend.changes()
        assert 2 == trend.exit_code()

    def test_healing_deltas(self) -> None:
        """The healing counters are reported as what they gained."""
        trend = trend_of(
            document(totalAttempts=4, successfulHealings=3, failedHealings=1),
            document(totalAttempts=9, successfulHealings=5, failedHealings=4),
        )
        assert (
            "healing",
            "attempts +5, succeeded +2, failed +3",
        ) in trend.changes()

    def test_failures_first_last_max(self) -> None:
        """consecutiveFailures: first -> last, and the highest seen."""
        trend = trend_of(*(document(failures=n) for n in (1, 4, 2)))
        assert ("consecutiveFailures", "1 -> 2 (max 4)") in trend.changes()
        assert [2] == trend.rising

    def test_unanswered_samples_change_nothing(self) -> None:
        """A sample without an answer is counted, not compared."""
        trend = trend_of(document(breakers={"db": "CLOSED"}))
        trend.miss("timed out", 1_767_268_860.0)
        trend.add(document(breakers={"db": "CLOSED"}), 1_767_268_920.0)
        assert (3, 1) == (trend.samples, trend.unreachable)
        assert ("breakers", "no change") in trend.changes()
