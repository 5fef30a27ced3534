from __future__ import annotations

import os
import signal
import time

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil  # type: ignore[import-untyped]
import pytest

from selfhealing.actions import (
    CommandAction,
    HttpAction,
    RestartProcessAction,
)
from selfhealing.checks import (
    CommandCheck,
    DiskCheck,
    HttpCheck,
    HttpSession,
    MemoryCheck,
    ProcessCheck,
    TcpCheck,
)
from selfhealing.config import Config, parse_config
from selfhealing.engine import SelfHealingEngine
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.runtime import Runtime
from selfhealing.supervisor import ProcessSupervisor
from selfhealing.targets import Target, TargetHealth
from selfhealing.testing import FakeClock
from selfhealing.wiring import (
    IMPLICIT_INTERVAL,
    build_action,
    build_check,
    build_process,
    build_targets,
    targets_by_process,
)
from support import LiveDaemon


pytestmark = pytest.mark.anyio

T = TypeVar("T")

# Generous bound for a live daemon to react to a real process's death;
# never reached when things work.
LIVE_WAIT = 15.0

SLEEPER = ["sleep", "60"]
TCP = {"type": "tcp", "port": 9}


def restart(name: str, process: str) -> dict[str, Any]:
    return {"name": name, "type": "restart_process", "process": process}


@dataclass
class Parts:
    """What build_* need, on a FakeClock, with a real supervisor."""

    directory: Path
    clock: FakeClock
    bus: EventBus
    registry: CircuitBreakerRegistry
    engine: SelfHealingEngine
    session: HttpSession
    supervisor: ProcessSupervisor

    def add_processes(self, config: Config) -> None:
        for spec in config.processes:
            self.supervisor.add(
                build_process(
                    spec,
                    directory=self.directory,
                    log_dir=self.directory / "logs",
                    state_dir=self.directory / "state",
                    clock=self.clock,
                )
            )

    def check(self, data: dict[str, Any]) -> Any:
        config = parse_config(
            {"targets": [{"name": "t", "check": data}], **self._processes()}
        )
        self.add_processes(config)
        return build_check(
            config.targets[0].check,
            directory=self.directory,
            session=self.session,
            supervisor=self.supervisor,
            clock=self.clock,
        )

    def action(self, data: dict[str, Any]) -> Any:
        config = parse_config({"actions": [data], **self._processes()})
        self.add_processes(config)
        return build_action(
            config.actions[0],
            directory=self.directory,
            session=self.session,
            supervisor=self.supervisor,
            clock=self.clock,
        )

    def targets(self, data: dict[str, Any]) -> dict[str, Target]:
        config = parse_config(data)
        self.add_processes(config)
        return build_targets(
            config,
            directory=self.directory,
            engine=self.engine,
            registry=self.registry,
            supervisor=self.supervisor,
            session=self.session,
            detection=lambda: True,
            supervision=lambda: True,
            clock=self.clock,
            bus=self.bus,
        )

    def _processes(self) -> dict[str, Any]:
        # Checks and actions may name the process "web".
        if "web" in self.supervisor:
            return {}
        return {"processes": [{"name": "web", "command": SLEEPER}]}


@pytest.fixture(name="parts")
async def _parts(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Parts]:
    bus = EventBus()
    registry = CircuitBreakerRegistry(clock=clock, bus=bus)
    engine = SelfHealingEngine(registry=registry, clock=clock, bus=bus)
    session = HttpSession()
    supervisor = ProcessSupervisor(clock=clock)
    yield Parts(tmp_path, clock, bus, registry, engine, session, supervisor)
    await supervisor.stop_all()
    await session.aclose()


# ------------------------------------------------------------------- checks


class TestBuildCheck:
    async def test_http(self, parts: Parts) -> None:
        """An http check becomes an HttpCheck with its settings."""
        check = parts.check(
            {
                "type": "http",
                "url": "http://127.0.0.1:8080/health",
                "method": "HEAD",
                "timeout": "250ms",
            }
        )

        assert isinstance(check, HttpCheck)
        assert ("http://127.0.0.1:8080/health", "HEAD", 0.25) == (
            check.url,
            check.method,
            check.timeout,
        )

    async def test_tcp(self, parts: Parts) -> None:
        """A tcp check becomes a TcpCheck on its host and port."""
        check = parts.check(
            {"type": "tcp", "host": "localhost", "port": 5432, "timeout": 2}
        )

        assert isinstance(check, TcpCheck)
        assert ("localhost", 5432, 2.0) == (
            check.host,
            check.port,
            check.timeout,
        )

    async def test_process_by_name(self, parts: Parts) -> None:
        """A process check by name asks the supervisor about that process."""
        check = parts.check({"type": "process", "process": "web"})
        assert isinstance(check, ProcessCheck)

        down = await check.check()
        pid = await parts.supervisor.get("web").start()
        up = await check.check()

        assert (False, "process not running") == (down.ok, down.detail)
        assert (True, f"pid {pid} running") == (up.ok, up.detail)

    async def test_process_by_pid_file(self, parts: Parts) -> None:
        """A pid file is read relative to the working directory."""
        (parts.directory / "run").mkdir()
        (parts.directory / "run" / "app.pid").write_text(str(os.getpid()))
        check = parts.check({"type": "process", "pid_file": "run/app.pid"})

        result = await check.check()

        assert isinstance(check, ProcessCheck)
        assert (True, f"pid {os.getpid()} running") == (
            result.ok,
            result.detail,
        )

    async def test_process_by_match(self, parts: Parts) -> None:
        """A match check looks for a command line."""
        check = parts.check({"type": "process", "match": "postgres: main"})

        assert isinstance(check, ProcessCheck)
        assert "ProcessCheck(match='postgres: main')" == repr(check)

    async def test_command(self, parts: Parts) -> None:
        """A command check runs its argv in the working directory (or its
        cwd below it) with its env."""
        (parts.directory / "sub").mkdir()
        check = parts.check(
            {
                "type": "command",
                "command": ["sh", "-c", 'test "$(pwd)" = "$WANT"; exit 4'],
                "cwd": "sub",
                "env": {"WANT": str((parts.directory / "sub").resolve())},
                "expected_exit_code": 4,
            }
        )

        assert isinstance(check, CommandCheck)
        assert (parts.directory / "sub", 4) == (
            check.cwd,
            check.expected_exit_code,
        )
        assert (await check.check()).ok

    async def test_command_default_cwd(self, parts: Parts) -> None:
        """Without a cwd, a command runs in the working directory."""
        check = parts.check({"type": "command", "command": ["true"]})

        assert parts.directory == check.cwd

    async def test_disk(self, parts: Parts) -> None:
        """A disk check watches its path relative to the working
        directory."""
        check = parts.check(
            {
                "type": "disk",
                "path": "data",
                "max_used_percent": 90,
                "max_inodes_percent": 80,
            }
        )

        assert isinstance(check, DiskCheck)
        assert (parts.directory / "data", 90, 80) == (
            check.path,
            check.max_used_percent,
            check.max_inodes_percent,
        )

    async def test_disk_absolute(self, parts: Parts) -> None:
        """An absolute disk path stays as it is."""
        check = parts.check({"type": "disk", "max_used_percent": 90})

        assert Path("/") == check.path

    async def test_memory(self, parts: Parts) -> None:
        """A memory check has its threshold."""
        check = parts.check({"type": "memory", "max_used_percent": 95})

        assert isinstance(check, MemoryCheck)
        assert 95 == check.max_used_percent


# ------------------------------------------------------------------ actions


class TestBuildAction:
    async def test_restart_process(self, parts: Parts) -> None:
        """restart_process restarts the supervisor's process of that name."""
        action = parts.action({**restart("r", "web"), "timeout": "5s"})

        assert isinstance(action, RestartProcessAction)
        assert (parts.supervisor.get("web"), 5.0) == (
            action.process,
            action.timeout,
        )

    async def test_command(self, parts: Parts) -> None:
        """A command action runs its argv in the working directory."""
        action = parts.action(
            {
                "name": "c",
                "type": "command",
                "command": ["sh", "-c", 'test "$(pwd)" = "$WANT"'],
                "env": {"WANT": str(parts.directory.resolve())},
                "timeout": 3,
            }
        )

        assert isinstance(action, CommandAction)
        assert ("c", 3.0) == (action.name, action.timeout)
        result = await action.run()
        assert (True, "exit code 0") == (result.ok, result.detail)

    async def test_http(self, parts: Parts) -> None:
        """An http action keeps its method, body and timeout."""
        action = parts.action(
            {
                "name": "h",
                "type": "http",
                "url": "http://127.0.0.1:9/hook",
                "method": "PUT",
                "body": "restart",
                "timeout": "2s",
            }
        )

        assert isinstance(action, HttpAction)
        assert ("PUT", "restart", 2.0) == (
            action.method,
            action.body,
            action.timeout,
        )


# ---------------------------------------------------------------- processes


class TestBuildProcess:
    async def test_settings(self, parts: Parts) -> None:
        """A process gets its argv, cwd below the directory, env, stop
        policy and a log in the log directory."""
        config = parse_config(
            {
                "processes": [
                    {
                        "name": "web",
                        "command": SLEEPER,
                        "cwd": "app",
                        "env": {"PORT": "8080"},
                        "stop_signal": "INT",
                        "stop_timeout": "3s",
                        "autostart": False,
                    }
                ]
            }
        )

        process = build_process(
            config.processes[0],
            directory=parts.directory,
            log_dir=parts.directory / "logs",
            state_dir=parts.directory / "state",
            clock=parts.clock,
        )

        assert (
            "web",
            tuple(SLEEPER),
            parts.directory / "app",
            {"PORT": "8080"},
            signal.SIGINT,
            3.0,
            False,
        ) == (
            process.name,
            process.command,
            process.cwd,
            process.env,
            process.stop_signal,
            process.stop_timeout,
            process.autostart,
        )
        assert (parts.directory / "logs" / "web.log").absolute() == (
            process.log_path
        )


# ------------------------------------------------------------------ targets


class TestBuildTargets:
    async def test_configured_target(self, parts: Parts) -> None:
        """A configured target gets its check, ladder in order, thresholds
        and its own breaker target:<name>."""
        targets = parts.targets(
            {
                "processes": [{"name": "web", "command": SLEEPER}],
                "actions": [
                    {"name": "flush", "type": "command", "command": ["true"]},
                    restart("restart-web", "web"),
                ],
                "targets": [
                    {
                        "name": "site",
                        "actions": ["restart-web", "flush"],
                        "verify_settle": "2s",
                        "relapse_window": "1m",
                        "breaker": {"failure_threshold": 2},
                        "check": {
                            "type": "http",
                            "url": "http://127.0.0.1:8080/",
                            "interval": "2s",
                            "initial_delay": "5s",
                            "failure_threshold": 4,
                            "success_threshold": 2,
                        },
                    }
                ],
            }
        )

        site = targets["site"]
        assert isinstance(site.check, HttpCheck)
        assert ["restart-web", "flush"] == [a.name for a in site.ladder]
        assert (2.0, 5.0, 4, 2, 12.0, 2.0, 60.0) == (
            site.interval,
            site.initial_delay,
            site.failure_threshold,
            site.success_threshold,
            site.verify_timeout,
            site.verify_settle,
            site.relapse_window,
        )
        assert "target:site" == site.breaker.name
        assert 2 == site.breaker.settings.failure_threshold
        assert site.breaker is parts.registry.get("target:site")
        assert site.engine is parts.engine

    async def test_unwatched_process_gets_implicit_target(
        self, parts: Parts
    ) -> None:
        """A process no target watches gets a target of its own name whose
        ladder restarts it."""
        targets = parts.targets(
            {"processes": [{"name": "worker", "command": SLEEPER}]}
        )

        assert ["worker"] == list(targets)
        worker = targets["worker"]
        assert isinstance(worker.check, ProcessCheck)
        [action] = worker.ladder
        assert isinstance(action, RestartProcessAction)
        assert ("restart-worker", parts.supervisor.get("worker")) == (
            action.name,
            action.process,
        )
        assert (IMPLICIT_INTERVAL, 1) == (
            worker.interval,
            worker.failure_threshold,
        )
        assert "target:worker" == worker.breaker.name

    async def test_implicit_target_watches_process(self, parts: Parts) -> None:
        """The implicit target's check follows the process's life."""
        targets = parts.targets(
            {"processes": [{"name": "worker", "command": SLEEPER}]}
        )
        check = targets["worker"].check

        assert not (await check.check()).ok
        await parts.supervisor.get("worker").start()
        assert (await check.check()).ok

    async def test_breakers_section_configures_a_target_breaker(
        self, tmp_path: Path
    ) -> None:
        """[breakers."target:web"] wins over the target's own section and
        over the never-permanent default."""
        runtime = Runtime(
            parse_config(
                {
                    "breakers": {
                        "target:web": {
                            "failure_threshold": 4,
                            "permanent_after_trips": 2,
                        }
                    },
                    "targets": [{"name": "web", "check": TCP}],
                    "processes": [],
                }
            ),
            directory=tmp_path,
            environ={},
            persistent=False,
        )
        settings = runtime.registry.get("target:web").settings
        assert (4, 2) == (
            settings.failure_threshold,
            settings.permanent_after_trips,
        )

    async def test_no_implicit_target_without_autostart(
        self, parts: Parts
    ) -> None:
        """A process started by hand (autostart false) is not watched, or
        its first probe would start it."""
        targets = parts.targets(
            {
                "processes": [
                    {"name": "batch", "command": SLEEPER, "autostart": False}
                ]
            }
        )
        assert {} == targets

    async def test_implicit_name_taken(self, parts: Parts) -> None:
        """If a target already has the process's name, the implicit one is
        called process:<name>."""
        targets = parts.targets(
            {
                "processes": [{"name": "web", "command": SLEEPER}],
                "targets": [{"name": "web", "check": TCP}],
            }
        )

        assert ["web", "process:web"] == list(targets)
        implicit = targets["process:web"]
        [action] = implicit.ladder
        assert isinstance(action, RestartProcessAction)
        assert parts.supervisor.get("web") is action.process
        assert "target:process:web" == implicit.breaker.name
        assert () == targets["web"].ladder

    @pytest.mark.parametrize(
        "target",
        [
            pytest.param(
                {"name": "site", "check": TCP, "actions": ["restart-web"]},
                id="ladder-restarts-it",
            ),
            pytest.param(
                {
                    "name": "site",
                    "check": {"type": "process", "process": "web"},
                },
                id="check-watches-it",
            ),
        ],
    )
    async def test_watched_process_has_no_implicit_target(
        self, parts: Parts, target: dict[str, Any]
    ) -> None:
        """A process whose restart is in a ladder, or that a process check
        watches, gets no implicit target."""
        targets = parts.targets(
            {
                "processes": [{"name": "web", "command": SLEEPER}],
                "actions": [restart("restart-web", "web")],
                "targets": [target],
            }
        )

        assert ["site"] == list(targets)

    async def test_no_processes_no_implicit_targets(
        self, parts: Parts
    ) -> None:
        """Without processes there are only the configured targets."""
        targets = parts.targets({"targets": [{"name": "db", "check": TCP}]})

        assert ["db"] == list(targets)


class TestTargetsByProcess:
    async def test_mapping(self, parts: Parts) -> None:
        """A crash of a process concerns the targets whose ladder restarts
        it and those whose process check watches it, each once."""
        data = {
            "processes": [
                {"name": "web", "command": SLEEPER},
                {"name": "db", "command": SLEEPER},
                {"name": "cache", "command": SLEEPER},
            ],
            "actions": [
                restart("restart-web", "web"),
                restart("restart-db", "db"),
            ],
            "targets": [
                {"name": "site", "check": TCP, "actions": ["restart-web"]},
                {
                    "name": "web-alive",
                    "check": {"type": "process", "process": "web"},
                    "actions": ["restart-web"],
                },
                {
                    "name": "db-alive",
                    "check": {"type": "process", "process": "db"},
                },
                {
                    "name": "stack",
                    "check": TCP,
                    "actions": ["restart-db", "restart-web"],
                },
                {"name": "other", "check": TCP},
            ],
        }
        targets = parts.targets(data)

        found = targets_by_process(parse_config(data), targets)

        assert {
            "web": ["site", "web-alive", "stack"],
            "db": ["db-alive", "stack"],
            "cache": ["cache"],
        } == {process: [t.name for t in ts] for process, ts in found.items()}

    async def test_empty(self, parts: Parts) -> None:
        """Targets without processes map nothing."""
        data = {"targets": [{"name": "db", "check": TCP}]}

        assert {} == targets_by_process(
            parse_config(data), parts.targets(data)
        )


# ------------------------------------------------------------------ runtime


RUNTIME_CONFIG: dict[str, Any] = {
    "processes": [
        {"name": "web", "command": SLEEPER},
        {"name": "worker", "command": SLEEPER, "autostart": False},
    ],
    "actions": [restart("restart-web", "web")],
    "targets": [
        {
            "name": "site",
            "check": {"type": "tcp", "port": 9, "interval": "1h"},
            "actions": ["restart-web"],
        }
    ],
}


class TestRuntime:
    def test_builds_targets(self, tmp_path: Path) -> None:
        """A Runtime builds configured and implicit targets from a config."""
        runtime = Runtime(
            parse_config(RUNTIME_CONFIG), directory=tmp_path, environ={}
        )

        # worker starts by hand (autostart false): no implicit target.
        assert ["site"] == list(runtime.targets)
        assert ["web", "worker"] == [p.name for p in runtime.supervisor]
        assert ["site"] == [t.name for t in runtime._crash_targets["web"]]

    def test_status_lists_targets_and_processes(self, tmp_path: Path) -> None:
        """status() includes every target and every process."""
        runtime = Runtime(
            parse_config(RUNTIME_CONFIG), directory=tmp_path, environ={}
        )

        status = runtime.status()

        assert ["site"] == [t["name"] for t in status["targets"]]
        assert {"health": "unknown", "detection": "active"} == {
            k: status["targets"][0][k] for k in ("health", "detection")
        }
        assert [("web", "stopped", None), ("worker", "stopped", None)] == [
            (p["name"], p["state"], p["pid"]) for p in status["processes"]
        ]

    def test_default_config(self, tmp_path: Path) -> None:
        """Without a config there are no targets and no processes."""
        runtime = Runtime(directory=tmp_path, environ={})

        status = runtime.status()

        assert ([], []) == (status["targets"], status["processes"])

    def test_detection_flag(self, tmp_path: Path) -> None:
        """Targets read the detection flag of the runtime's environment."""
        runtime = Runtime(
            parse_config(RUNTIME_CONFIG),
            directory=tmp_path,
            environ={"FEATURE_AUTO_DETECTION_MONITORING": "false"},
        )
        target = runtime.targets["site"]

        assert target._detection is not None
        assert not target._detection()

    async def test_start_and_stop(self, tmp_path: Path) -> None:
        """start() runs the autostart processes and schedules one probe
        task per target; stop() stops them again."""
        runtime = Runtime(
            parse_config(RUNTIME_CONFIG), directory=tmp_path, environ={}
        )

        await runtime.start()
        try:
            processes = {p["name"]: p for p in runtime.status()["processes"]}
            tasks = {t.id for t in runtime.tasks.snapshot().tasks}
        finally:
            await runtime.stop()

        assert ("running", "stopped") == (
            processes["web"]["state"],
            processes["worker"]["state"],
        )
        assert {"check:site", "resources.sample"} == tasks
        assert [("web", "stopped"), ("worker", "stopped")] == [
            (p["name"], p["state"]) for p in runtime.status()["processes"]
        ]
        assert not psutil.pid_exists(processes["web"]["pid"]) or (
            psutil.Process(processes["web"]["pid"]).status()
            == psutil.STATUS_ZOMBIE
        )


# --------------------------------------------------------- live: crashes


def wait_for(what: str, fn: Callable[[], T | None]) -> T:
    """Poll *fn* until it returns something truthy, within LIVE_WAIT."""
    deadline = time.monotonic() + LIVE_WAIT
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def recorder(live: LiveDaemon) -> list[Event]:
    """Every event the live runtime publishes from now on."""
    events: list[Event] = []
    live.on_loop(lambda: live.runtime.bus.subscribe(events.append))
    return events


def running_pid(live: LiveDaemon, name: str) -> int | None:
    for process in live.get("/api/status").json()["processes"]:
        if process["name"] == name and process["state"] == "running":
            return int(process["pid"])
    return None


CRASH_CONFIG: dict[str, Any] = {
    "processes": [
        {"name": "worker", "command": SLEEPER, "stop_timeout": "2s"},
        {"name": "api", "command": SLEEPER, "stop_timeout": "2s"},
    ],
    "actions": [restart("restart-api", "api")],
    "targets": [
        {
            "name": "api-alive",
            "check": {"type": "process", "process": "api", "interval": "1h"},
            "actions": ["restart-api"],
            "verify_settle": "0s",
        }
    ],
}


class TestLiveCrash:
    @pytest.mark.parametrize(
        ("process", "target"),
        [
            pytest.param("worker", "worker", id="implicit-target"),
            pytest.param("api", "api-alive", id="configured-target"),
        ],
    )
    def test_crash_is_healed(
        self,
        start_live: Callable[..., LiveDaemon],
        process: str,
        target: str,
    ) -> None:
        """A killed process marks its target unhealthy at once, and a
        healing restarts it."""
        live = start_live(CRASH_CONFIG)
        events = recorder(live)
        before = wait_for(
            f"{process} running", lambda: running_pid(live, process)
        )

        os.kill(before, signal.SIGKILL)

        after = wait_for(
            f"{process} restarted",
            lambda: (pid := running_pid(live, process)) != before and pid,
        )
        wait_for(
            "healing.succeeded",
            lambda: any(e.kind is EventKind.HEALING_SUCCEEDED for e in events),
        )
        kinds = [(str(e.kind), e.target) for e in events]
        exited = kinds.index(("process.exited", process))
        assert ("target.unhealthy", target) == kinds[exited + 1]
        unhealthy = events[exited + 1]
        assert (
            f"process {process} exited with code -9"
            == unhealthy.data["detail"]
        )
        assert before != after
        status = live.get("/api/status").json()
        assert (1, 1) == (
            status["selfHealing"]["totalAttempts"],
            status["selfHealing"]["successfulHealings"],
        )
        [row] = [p for p in status["processes"] if p["name"] == process]
        assert 1 == row["restarts"]

    def test_process_monitoring_off(
        self, start_live: Callable[..., LiveDaemon]
    ) -> None:
        """With FEATURE_PROCESS_MONITORING_ENABLED=false a crash is
        recorded as process.exited, but nothing is healed."""
        live = start_live(
            CRASH_CONFIG, {"FEATURE_PROCESS_MONITORING_ENABLED": "false"}
        )
        events = recorder(live)
        pid = wait_for("api running", lambda: running_pid(live, "api"))

        os.kill(pid, signal.SIGKILL)

        exited = wait_for(
            "process.exited",
            lambda: [e for e in events if e.kind is EventKind.PROCESS_EXITED],
        )
        # The exit listener decides at once: its verdict is in by now.
        health, attempts, state = live.on_loop(
            lambda: (
                live.runtime.targets["api-alive"].health,
                live.runtime.engine.snapshot().total_attempts,
                live.runtime.supervisor.get("api").state,
            )
        )
        assert [("api", -9)] == [
            (e.target, e.data["exitCode"]) for e in exited
        ]
        assert (0, "exited") == (attempts, state)
        assert health is not TargetHealth.UNHEALTHY
        assert [] == [
            e
            for e in events
            if e.kind
            in {EventKind.TARGET_UNHEALTHY, EventKind.HEALING_ATTEMPTED}
        ]
