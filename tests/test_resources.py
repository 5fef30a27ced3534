from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from selfhealing import resources
from selfhealing.clock import SystemClock
from selfhealing.exceptions import ConfigError, UnknownNameError
from selfhealing.forecast import Decision, PreventiveRule
from selfhealing.resources import (
    METRIC_HELP,
    SAMPLE_TASK,
    ResourceMonitor,
)
from selfhealing.tasks import BackgroundTaskManager
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

MB = 1e6
BALLAST = 40_000_000  # bytes the family's parent touches
# A parent that touches BALLAST bytes and starts a `sleep` child, then
# prints the child's pid and waits.
FAMILY = [
    sys.executable,
    "-c",
    (
        "import subprocess, time\n"
        f"ballast = b'x' * {BALLAST}\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)"
    ),
]


@dataclass
class Supervised:
    """What the monitor reads of a ManagedProcess: a name and a pid."""

    name: str
    pid: int | None


Start = Callable[[list[str]], subprocess.Popen[str]]


@pytest.fixture(name="start")
def _start() -> Iterator[Start]:
    """Start programs in their own process groups; kill them at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(argv: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate(timeout=10)


def monitor_of(
    clock: FakeClock, *processes: Supervised, **kwargs: object
) -> ResourceMonitor:
    """A monitor over *processes* (a live view: later edits count)."""
    return ResourceMonitor(
        clock=clock,
        processes=lambda: processes,
        **kwargs,  # type: ignore[arg-type]
    )


class TestExports:
    def test_all_is_pinned(self) -> None:
        """The public names are pinned, and each one exists."""
        names = resources.__all__

        assert [
            "METRIC_HELP",
            "SAMPLE_TASK",
            "DaemonHealth",
            "DiskUsage",
            "HostUsage",
            "IntervalRegistry",
            "MetricSample",
            "ProcessLike",
            "ProcessUsage",
            "ResourceFinding",
            "ResourceMonitor",
            "ResourceSnapshot",
        ] == names
        assert all(hasattr(resources, name) for name in names)


class TestProcessSampling:
    def test_a_tree_sums_rss_and_counts_children(
        self, clock: FakeClock, start: Start
    ) -> None:
        """A parent with a child: RSS is summed over both, children is 1."""
        family = start(FAMILY)
        assert family.stdout is not None
        child = int(family.stdout.readline())
        monitor = monitor_of(clock, Supervised("family", family.pid))

        assert monitor.sample()

        members = [psutil.Process(family.pid), psutil.Process(child)]
        rss = monitor.series("process:family:rss").values()[-1]
        assert rss >= BALLAST
        assert sum(p.memory_info().rss for p in members) == pytest.approx(
            rss, rel=0.1
        )
        assert [1.0] == monitor.series("process:family:children").values()
        assert [float(sum(p.num_threads() for p in members))] == (
            monitor.series("process:family:threads").values()
        )
        assert [float(sum(p.num_fds() for p in members))] == (
            monitor.series("process:family:fds").values()
        )

    def test_cpu_is_reported_from_the_second_pass(
        self, clock: FakeClock, start: Start
    ) -> None:
        """psutil measures CPU since the previous reading, so the first
        pass only primes it."""
        sleeper = start(["sleep", "60"])
        monitor = monitor_of(clock, Supervised("sleeper", sleeper.pid))

        monitor.sample()
        with pytest.raises(UnknownNameError):
            monitor.series("process:sleeper:cpu")
        clock.advance(5)
        monitor.sample()

        cpu = monitor.series("process:sleeper:cpu").samples()
        assert 1 == len(cpu)
        assert 5.0 == cpu[0][0]
        assert cpu[0][1] >= 0.0

    def test_a_new_pid_resets_the_series(
        self, clock: FakeClock, start: Start
    ) -> None:
        """A restarted process (new pid) starts its series over."""
        first, second = start(["sleep", "60"]), start(["sleep", "60"])
        web = Supervised("web", first.pid)
        monitor = monitor_of(clock, web)
        for _ in range(3):
            monitor.sample()
            clock.advance(5)
        assert 3 == len(monitor.series("process:web:rss"))

        web.pid = second.pid
        monitor.sample()

        assert [15.0] == [
            t for t, _ in monitor.series("process:web:rss").samples()
        ]
        assert 0 == len(monitor.series("process:web:cpu"))
        assert second.pid == monitor.snapshot().processes[0].pid

    def test_a_stopped_process_has_no_readings(
        self, clock: FakeClock, start: Start
    ) -> None:
        """pid None (stopped) empties the series; the status shows nulls."""
        sleeper = start(["sleep", "60"])
        web = Supervised("web", sleeper.pid)
        monitor = monitor_of(clock, web)
        monitor.sample()

        web.pid = None
        clock.advance(5)
        monitor.sample()

        assert 0 == len(monitor.series("process:web:rss"))
        usage = monitor.snapshot().processes[0]
        assert (None, None, None) == (usage.pid, usage.rss, usage.threads)

    def test_a_process_that_vanished_is_skipped(
        self, clock: FakeClock, start: Start
    ) -> None:
        """A pid that died before the pass records nothing, and no error."""
        sleeper = start(["sleep", "60"])
        os.killpg(sleeper.pid, signal.SIGKILL)
        sleeper.wait(timeout=10)
        monitor = monitor_of(clock, Supervised("gone", sleeper.pid))

        assert monitor.sample()

        assert "process:gone:rss" not in monitor.names()

    def test_a_process_removed_from_the_list_is_forgotten(
        self, clock: FakeClock, start: Start
    ) -> None:
        """A process no longer supervised loses its series."""
        sleeper = start(["sleep", "60"])
        supervised = [Supervised("web", sleeper.pid)]
        monitor = ResourceMonitor(clock=clock, processes=lambda: supervised)
        monitor.sample()

        supervised.clear()
        monitor.sample()

        assert not [n for n in monitor.names() if n.startswith("process:")]
        assert () == monitor.snapshot().processes


class TestDaemonAndHost:
    def test_daemon_and_host_series_are_sampled(
        self, clock: FakeClock, tmp_path: Path
    ) -> None:
        """One pass fills the daemon's, the host's and each disk's series."""
        monitor = monitor_of(clock, disk_paths=[tmp_path])

        monitor.sample()

        names = set(monitor.names())
        expected = {
            "daemon.rss",
            "daemon.fds",
            "daemon.threads",
            "daemon.children",
            "host.memory",
            "host.swap",
            "host.load1",
            "host.load5",
            "host.load15",
            f"disk:{tmp_path}",
        }
        if os.statvfs(tmp_path).f_files:
            expected.add(f"inodes:{tmp_path}")
        assert expected <= names
        used = monitor.series(f"disk:{tmp_path}").values()[-1]
        assert 0 <= used <= 100
        own = psutil.Process().memory_info().rss
        assert own == pytest.approx(
            monitor.series("daemon.rss").values()[-1], rel=0.2
        )

    def test_an_unreadable_disk_is_skipped_and_warned_once(
        self,
        clock: FakeClock,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A missing disk path records nothing and logs one warning."""
        missing = tmp_path / "missing"
        monitor = monitor_of(clock, disk_paths=[missing])

        with caplog.at_level(logging.WARNING, "selfhealing.resources"):
            monitor.sample()
            monitor.sample()
        missing.mkdir()
        with caplog.at_level(logging.INFO, "selfhealing.resources"):
            monitor.sample()

        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert 1 == len(warnings)
        assert str(missing) in warnings[0].getMessage()
        assert "readable again" in caplog.records[-1].getMessage()
        assert 1 == len(monitor.series(f"disk:{missing}"))


class TestFlag:
    def test_disabled_samples_nothing_and_calls_no_psutil(
        self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With process monitoring off, neither psutil nor the processes
        are touched, and the series stay empty."""

        def refuse(*_: object) -> NoReturn:
            raise AssertionError("sampled while disabled")

        monkeypatch.setattr(psutil, "Process", refuse)
        monkeypatch.setattr(psutil, "virtual_memory", refuse)
        monitor = ResourceMonitor(
            clock=clock, processes=refuse, enabled=lambda: False
        )

        assert not monitor.sample()
        assert [] == monitor.names()
        snapshot = monitor.snapshot()
        assert not snapshot.enabled
        assert 0 == snapshot.passes

    async def test_disabled_probe_measures_nothing(
        self, clock: FakeClock
    ) -> None:
        """The lag probe does nothing while monitoring is off."""
        monitor = ResourceMonitor(clock=clock, enabled=lambda: False)

        assert await monitor.probe_loop_lag() is None
        assert [] == monitor.names()

    def test_the_flag_is_read_at_each_pass(self, clock: FakeClock) -> None:
        """Switching the flag on starts sampling at the next pass."""
        flag = [False]
        monitor = ResourceMonitor(clock=clock, enabled=lambda: flag[0])
        monitor.sample()
        flag[0] = True

        assert monitor.sample()
        assert 1 == len(monitor.series("host.memory"))


class TestLoopLag:
    async def test_measures_an_injected_stall(self) -> None:
        """A coroutine that blocks the loop for 0.2 s shows as lag."""

        async def stall() -> None:
            time.sleep(0.2)  # blocks the loop: the stall under test

        monitor = ResourceMonitor(clock=SystemClock())
        blocker = asyncio.create_task(stall())

        lag = await monitor.probe_loop_lag()
        await blocker

        assert lag is not None
        assert 0.15 <= lag < 5.0
        assert [lag] == monitor.series("daemon.loop_lag").values()

    async def test_an_idle_loop_shows_no_lag_on_the_fake_clock(
        self, clock: FakeClock
    ) -> None:
        """On the fake clock the probe records a zero lag at the clock's time."""
        monitor = ResourceMonitor(clock=clock)
        clock.advance(7)

        assert 0.0 == await monitor.probe_loop_lag()
        assert [(7.0, 0.0)] == monitor.series("daemon.loop_lag").samples()


class TestDaemonHealth:
    def feed(
        self,
        monitor: ResourceMonitor,
        clock: FakeClock,
        name: str,
        signal: Callable[[float], float],
        seconds: float,
        *,
        step: float = 5.0,
    ) -> None:
        series = monitor.series(name)
        series.reset()
        start = clock.monotonic()
        while clock.monotonic() - start <= seconds:
            series.append(clock.monotonic(), signal(clock.monotonic() - start))
            clock.advance(step)

    def test_a_growing_daemon_is_leaking(self, clock: FakeClock) -> None:
        """A steady 30 MB/h RSS climb over the hour is a leak finding."""
        monitor = ResourceMonitor(clock=clock)
        monitor.sample()
        self.feed(
            monitor,
            clock,
            "daemon.rss",
            lambda t: 80 * MB + t * 30 * MB / 3600,
            3600,
        )

        health = monitor.daemon_health()

        assert health.leaking
        assert not health.lagging
        assert ["leak"] == [f.kind for f in health.findings]
        assert health.rss_slope == pytest.approx(30 * MB / 3600)
        assert (
            "the daemon's memory keeps growing: RSS 110 MB, rising 30 MB/h "
            "over the last 60 min"
        ) == health.findings[0].issue

    def test_a_steady_daemon_is_not_leaking(self, clock: FakeClock) -> None:
        """Flat RSS with noise and a slow warm-up is no leak."""
        monitor = ResourceMonitor(clock=clock)
        monitor.sample()
        self.feed(
            monitor,
            clock,
            "daemon.rss",
            lambda t: 80 * MB + (t % 60) * 0.01 * MB + t * 1 * MB / 3600,
            3600,
        )

        health = monitor.daemon_health()

        assert not health.leaking
        assert () == health.findings

    def test_a_short_history_is_not_judged(self, clock: FakeClock) -> None:
        """Under half the leak window, no slope is claimed."""
        monitor = ResourceMonitor(clock=clock)
        monitor.sample()
        self.feed(monitor, clock, "daemon.rss", lambda t: t * MB, 600)

        health = monitor.daemon_health()

        assert health.rss_slope is None
        assert not health.leaking

    async def test_a_lagging_loop_is_a_finding(self, clock: FakeClock) -> None:
        """Loop lag p99 over 100 ms in the last 5 min is a lag finding."""
        monitor = ResourceMonitor(clock=clock)
        await monitor.probe_loop_lag()
        self.feed(
            monitor,
            clock,
            "daemon.loop_lag",
            lambda t: 0.25 if t % 50 == 0 else 0.001,
            300,
            step=1.0,
        )

        health = monitor.daemon_health()

        assert health.lagging
        assert 0.25 == health.loop_lag_p99
        assert (
            "the daemon's event loop lags: p99 250 ms over the last 5 min "
            "(limit 100 ms)"
        ) == health.findings[0].issue

    async def test_rare_hiccups_are_not_lagging(
        self, clock: FakeClock
    ) -> None:
        """One slow tick in 300 stays under the 99th percentile."""
        monitor = ResourceMonitor(clock=clock)
        await monitor.probe_loop_lag()
        self.feed(
            monitor,
            clock,
            "daemon.loop_lag",
            lambda t: 0.5 if t == 100 else 0.002,
            300,
            step=1.0,
        )

        assert not monitor.daemon_health().lagging


class TestPreventive:
    def test_evaluates_rules_on_their_series(self, clock: FakeClock) -> None:
        """evaluate() decides each rule on the monitor's series, at the
        clock's time; a series never sampled keeps its rule quiet."""
        monitor = ResourceMonitor(clock=clock)
        monitor.sample()
        memory = monitor.series("host.memory")
        memory.reset()
        for _ in range(13):
            memory.append(clock.monotonic(), 99.0)
            clock.advance(5)
        full = PreventiveRule.from_condition(
            "full", "host.memory > 95 for 1m", action="shed"
        )
        unseen = PreventiveRule.from_condition(
            "unseen", "rss > 1GB for 1m", action="restart", process="web"
        )

        off = monitor.evaluate([full, unseen], enabled=False)
        on = monitor.evaluate([full, unseen], enabled=True)

        assert [Decision.DISABLED, Decision.QUIET] == [t.decision for t in off]
        assert [Decision.ACT, Decision.QUIET] == [t.decision for t in on]
        assert "web rss: no samples yet" == on[1].reason

    @pytest.mark.parametrize(
        ("condition", "expected"),
        [
            pytest.param(
                "disk /srv used% will reach 90 within 1h",
                "not a monitored disk path",
                id="unknown-disk",
            ),
            pytest.param(
                "host.memory > 90 for 2h", "raise the ring", id="too-long"
            ),
        ],
    )
    def test_validate_refuses_rules_it_cannot_serve(
        self, clock: FakeClock, condition: str, expected: str
    ) -> None:
        """A rule on an unmonitored disk, or longer than the ring, is refused."""
        monitor = ResourceMonitor(clock=clock, disk_paths=["/var"])
        rule = PreventiveRule.from_condition("r", condition, action="a")

        with pytest.raises(ConfigError, match=expected):
            monitor.validate(rule)

    def test_validate_accepts_what_fits(self, clock: FakeClock) -> None:
        """A disk it monitors, within the ring's hour, is fine."""
        monitor = ResourceMonitor(clock=clock, disk_paths=["/var"])
        rule = PreventiveRule.from_condition(
            "r", "disk /var used% will reach 95 within 1h", action="a"
        )

        monitor.validate(rule)


class TestSnapshot:
    def test_to_dict_and_metrics(
        self, clock: FakeClock, start: Start, tmp_path: Path
    ) -> None:
        """The snapshot serializes camelCase and yields known gauges."""
        sleeper = start(["sleep", "60"])
        monitor = monitor_of(
            clock, Supervised("web", sleeper.pid), disk_paths=[tmp_path]
        )
        monitor.sample()
        clock.advance(5)
        monitor.sample()

        snapshot = monitor.snapshot()
        body = snapshot.to_dict()

        assert snapshot.enabled
        assert 2 == body["passes"]
        assert "2026-01-01T00:00:05.000Z" == body["sampledAt"]
        web = snapshot.processes[0]
        assert ("web", sleeper.pid, 0) == (web.name, web.pid, web.children)
        assert {
            "name",
            "pid",
            "rssBytes",
            "cpuPercent",
            "openFds",
            "threads",
            "children",
        } == set(web.to_dict())
        daemon = body["daemon"]
        assert isinstance(daemon, dict)
        assert {"loopLagP99", "leaking", "rssBytes"} <= set(daemon)
        host = body["host"]
        assert isinstance(host, dict)
        assert str(tmp_path) == host["disks"][0]["path"]
        metrics = snapshot.metrics()
        assert {m.name for m in metrics} <= set(METRIC_HELP)
        labelled = {(m.name, m.labels) for m in metrics}
        assert (
            "selfheal_process_resident_memory_bytes",
            (("process", "web"),),
        ) in labelled
        assert (
            "selfheal_disk_used_percent",
            (("path", str(tmp_path)),),
        ) in labelled
        assert ("selfheal_host_load", (("period", "1m"),)) in labelled

    def test_unknown_series_is_an_unknown_name(self, clock: FakeClock) -> None:
        """series() of a name never sampled raises UnknownNameError."""
        with pytest.raises(UnknownNameError, match="nope"):
            ResourceMonitor(clock=clock).series("nope")


class TestSettings:
    async def test_register_adds_one_task(self, clock: FakeClock) -> None:
        """register() adds one task, probe and sampler, at the interval."""
        tasks = BackgroundTaskManager(clock=clock)
        monitor = ResourceMonitor(clock=clock, interval=10)

        assert SAMPLE_TASK == monitor.register(tasks)

        by_id = {t.id: t for t in tasks.snapshot().tasks}
        assert ([SAMPLE_TASK], 10.0, "monitor") == (
            list(by_id),
            by_id[SAMPLE_TASK].interval,
            by_id[SAMPLE_TASK].kind,
        )

    @pytest.mark.parametrize(
        ("kwargs", "where"),
        [
            pytest.param({"interval": 0}, "interval", id="interval"),
            pytest.param({"ring": 1}, "capacity", id="ring"),
            pytest.param({"lag_threshold": -1}, "lag_threshold", id="lag"),
        ],
    )
    def test_refuses_bad_settings(
        self, kwargs: dict[str, object], where: str
    ) -> None:
        """Impossible settings are refused, naming themselves."""
        with pytest.raises(ConfigError) as caught:
            ResourceMonitor(**kwargs)  # type: ignore[arg-type]

        assert where == caught.value.where
