from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from selfhealing import proclog, supervisor
from selfhealing.exceptions import ActionError, ConfigError, UnknownNameError
from selfhealing.proclog import CUT_MARKER, MAX_LINE_BYTES, ProcessLog
from selfhealing.supervisor import (
    ManagedProcess,
    ProcessSnapshot,
    ProcessState,
    ProcessSupervisor,
    reap_orphans,
)


pytestmark = pytest.mark.anyio

PY = sys.executable
# Generous: a loaded CI host may be slow to fork, never this slow.
WAIT = 10.0
SLEEPER = ["sleep", "60"]
IGNORES_TERM = [
    PY,
    "-c",
    (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)"
    ),
]
# Prints the pid of a `sleep 60` grandchild, then waits.
FAMILY_CODE = (
    "import subprocess, time\n"
    "child = subprocess.Popen(['sleep', '60'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)"
)
FAMILY = [PY, "-c", FAMILY_CODE]
# A daemon that starts FAMILY with a state dir, then waits to be killed.
DAEMON_CODE = """
import asyncio, sys
from selfhealing.supervisor import ManagedProcess

async def main():
    state_dir, log_dir, code = sys.argv[1:4]
    family = ManagedProcess(
        "family", [sys.executable, "-c", code],
        log_dir=log_dir, state_dir=state_dir,
    )
    await family.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""

Exits = list[tuple[str, int]]
Make = Callable[..., ManagedProcess]


async def wait_until(predicate: Callable[[], object]) -> None:
    """Poll *predicate* until it holds; fail after WAIT seconds."""
    with anyio.fail_after(WAIT):
        while not predicate():
            await anyio.sleep(0.005)


async def settle() -> None:
    """Let every ready callback and task on the loop run a few steps."""
    for _ in range(20):
        await anyio.sleep(0)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def live_children() -> list[int]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def grandchild_of(process: ManagedProcess) -> int | None:
    lines = [line for line in process.tail() if line.isdigit()]
    return int(lines[0]) if lines else None


@pytest.fixture(name="no_leftovers")
def _no_leftovers() -> Iterator[None]:
    yield
    deadline = time.monotonic() + WAIT
    while live_children() and time.monotonic() < deadline:
        time.sleep(0.01)
    leftovers = live_children()
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert [] == leftovers


@pytest.fixture(name="exits")
def _exits() -> Exits:
    return []


@pytest.fixture(name="sup")
async def _sup(
    no_leftovers: None, exits: Exits
) -> AsyncIterator[ProcessSupervisor]:
    def record(process: ManagedProcess, code: int) -> None:
        exits.append((process.name, code))

    sup = ProcessSupervisor(on_exit=record)
    yield sup
    await sup.stop_all()


@pytest.fixture(name="make")
def _make(sup: ProcessSupervisor, tmp_path: Path) -> Make:
    def make(
        name: str, command: Sequence[str], **options: Any
    ) -> ManagedProcess:
        options.setdefault("log_dir", tmp_path / "logs")
        process = ManagedProcess(name, command, **options)
        sup.add(process)
        return process

    return make


class TestStartStop:
    async def test_start_then_stop(self, make: Make, exits: Exits) -> None:
        """A started child runs until stop() ends it with stop_signal."""
        process = make("sleeper", SLEEPER)

        pid = await process.start()

        assert SLEEPER == psutil.Process(pid).cmdline()
        assert ProcessState.RUNNING == process.state
        assert process.running
        assert pid == process.pid
        assert -signal.SIGTERM == await process.stop()
        assert gone(pid)
        assert ProcessState.STOPPED == process.state
        assert process.pid is None
        assert [] == exits

    async def test_start_when_running(self, make: Make) -> None:
        """Starting a running process returns its pid and spawns nothing."""
        process = make("sleeper", SLEEPER)

        first, second = await asyncio.gather(process.start(), process.start())

        assert first == second == await process.start()
        assert [first] == live_children()

    async def test_stop_when_not_running(self, make: Make) -> None:
        """Stopping a process that never ran returns None."""
        process = make("sleeper", SLEEPER)

        assert await process.stop() is None
        assert ProcessState.STOPPED == process.state

    async def test_stop_kills_the_group(self, make: Make) -> None:
        """stop() signals the whole group, so grandchildren go too."""
        process = make("family", FAMILY)
        pid = await process.start()
        await wait_until(lambda: grandchild_of(process))
        grandchild = grandchild_of(process)
        assert grandchild is not None
        assert pid == os.getpgid(grandchild)

        await process.stop()

        await wait_until(lambda: gone(pid) and gone(grandchild))

    async def test_kill_after_stop_timeout(self, make: Make) -> None:
        """A child ignoring SIGTERM is SIGKILLed once stop_timeout passes."""
        process = make("stubborn", IGNORES_TERM, stop_timeout=0.3)
        pid = await process.start()
        await wait_until(lambda: "ready" in process.tail())
        started = time.monotonic()

        code = await process.stop()

        assert -signal.SIGKILL == code
        assert time.monotonic() - started >= 0.25
        assert gone(pid)
        assert -signal.SIGKILL == process.snapshot().last_exit_code

    async def test_custom_stop_signal(self, make: Make) -> None:
        """stop() sends the configured stop_signal."""
        process = make("sleeper", SLEEPER, stop_signal=signal.SIGINT)
        await process.start()

        assert -signal.SIGINT == await process.stop()


class TestExits:
    async def test_unrequested_exit_is_reported(
        self, make: Make, exits: Exits
    ) -> None:
        """A kill -9 is reported once to both listeners and not healed."""
        own: Exits = []
        process = make(
            "victim", SLEEPER, on_exit=lambda p, c: own.append((p.name, c))
        )
        pid = await process.start()

        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: exits)
        await settle()

        assert [("victim", -9)] == exits == own
        assert ProcessState.EXITED == process.state
        assert process.pid is None
        assert -9 == process.snapshot().last_exit_code
        assert 0 == process.restarts
        assert [] == live_children()

    async def test_normal_exit_code(self, make: Make, exits: Exits) -> None:
        """A child that ends by itself is reported with its exit code."""
        process = make("quitter", [PY, "-c", "raise SystemExit(3)"])
        await process.start()

        await wait_until(lambda: exits)

        assert [("quitter", 3)] == exits
        assert ProcessState.EXITED == process.state

    async def test_failing_listener_is_logged(
        self, make: Make, exits: Exits, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A listener that raises is logged and the next one still runs."""

        def broken(process: ManagedProcess, code: int) -> None:
            raise RuntimeError(code)

        process = make("victim", SLEEPER, on_exit=broken)
        pid = await process.start()

        with caplog.at_level(logging.ERROR, "selfhealing.supervisor"):
            os.kill(pid, signal.SIGKILL)
            await wait_until(lambda: exits)

        assert [("victim", -9)] == exits
        assert "exit listener of victim failed" in caplog.text

    async def test_async_listener_restarts(self, make: Make) -> None:
        """An async listener runs as a task and can restart at once."""
        restarted: list[int] = []

        async def heal(process: ManagedProcess, code: int) -> None:
            restarted.append(await process.restart())

        process = make("phoenix", SLEEPER, on_exit=heal)
        old = await process.start()

        os.kill(old, signal.SIGKILL)
        await wait_until(lambda: restarted)

        assert [process.pid] == restarted
        assert old != process.pid
        assert ProcessState.RUNNING == process.state
        assert 1 == process.restarts

    async def test_exit_seen_while_stdout_is_held(
        self, make: Make, exits: Exits
    ) -> None:
        """The leader's exit is reported though a grandchild keeps stdout."""
        code = FAMILY_CODE.replace("time.sleep(60)", "raise SystemExit(4)")
        process = make("parent", [PY, "-c", code])
        pid = await process.start()

        await wait_until(lambda: exits)
        grandchild = grandchild_of(process)
        assert grandchild is not None
        assert not gone(grandchild)
        assert [("parent", 4)] == exits

        assert await process.stop() is None
        await wait_until(lambda: gone(pid) and gone(grandchild))
        assert ProcessState.STOPPED == process.state

    async def test_exit_during_stop_is_not_reported(
        self, make: Make, exits: Exits
    ) -> None:
        """Exits caused by stop() or restart() reach no listener."""
        process = make("sleeper", SLEEPER)
        await process.start()

        await process.restart()
        await process.stop()
        await settle()

        assert [] == exits


class TestRestart:
    async def test_restart_gives_a_new_pid(self, make: Make) -> None:
        """restart() replaces the child and counts the restart."""
        process = make("sleeper", SLEEPER)
        old = await process.start()

        new = await process.restart()

        assert old != new
        assert gone(old)
        assert new == process.pid
        assert 1 == process.restarts
        assert ProcessState.RUNNING == process.state
        assert -signal.SIGTERM == process.snapshot().last_exit_code

    async def test_restart_when_stopped_starts(self, make: Make) -> None:
        """restart() of a process that is not running just starts it."""
        process = make("sleeper", SLEEPER)

        pid = await process.restart()

        assert [pid] == live_children()
        assert 1 == process.restarts

    async def test_concurrent_restarts_spawn_one_child(
        self, make: Make
    ) -> None:
        """Restarts asked for together share one new child."""
        process = make("sleeper", SLEEPER)
        old = await process.start()

        pids = await asyncio.gather(*(process.restart() for _ in range(3)))

        assert 1 == len(set(pids))
        assert old not in pids
        assert [pids[0]] == live_children()
        assert 1 == process.restarts

    async def test_restart_and_stop_are_serialised(self, make: Make) -> None:
        """A stop racing a restart never leaves two children."""
        process = make("sleeper", SLEEPER)
        await process.start()

        await asyncio.gather(process.restart(), process.stop())

        expected = [process.pid] if process.running else []
        assert expected == live_children()


class TestOutput:
    async def test_output_goes_to_file_and_tail(
        self, make: Make, exits: Exits, tmp_path: Path
    ) -> None:
        """stdout and stderr land in <log_dir>/<name>.log and in tail()."""
        code = (
            "import sys\n"
            "for i in range(5): print(f'line {i}', flush=True)\n"
            "print('oops', file=sys.stderr)"
        )
        process = make("talker", [PY, "-c", code])
        await process.start()
        await wait_until(lambda: exits)

        expected = [f"line {i}" for i in range(5)] + ["oops"]
        log = tmp_path / "logs" / "talker.log"
        assert log == process.log_path
        assert expected == log.read_text().splitlines()
        assert expected[-3:] == process.tail(3)
        assert expected == process.tail()

    async def test_rotation_keeps_backups(
        self, make: Make, exits: Exits, tmp_path: Path
    ) -> None:
        """The log rotates at log_max_bytes and keeps log_backups files."""
        code = "for i in range(60): print(f'line {i:03}')"
        process = make(
            "chatty", [PY, "-c", code], log_max_bytes=100, log_backups=2
        )
        await process.start()
        await wait_until(lambda: exits)

        logs = tmp_path / "logs"
        names = sorted(path.name for path in logs.iterdir())
        assert ["chatty.log", "chatty.log.1", "chatty.log.2"] == names
        for path in logs.iterdir():
            assert path.stat().st_size <= 100
        last = (logs / "chatty.log").read_text().splitlines()[-1]
        assert "line 059" == last
        assert ["line 058", "line 059"] == process.tail(2)

    async def test_overlong_line_is_cut(
        self, make: Make, exits: Exits, tmp_path: Path
    ) -> None:
        """A line over 64 KiB is cut, and the next line still arrives."""
        code = "print('x' * 200_000); print('after')"
        process = make("wide", [PY, "-c", code])
        await process.start()
        await wait_until(lambda: exits)

        cut = "x" * MAX_LINE_BYTES + CUT_MARKER.decode()
        assert [cut, "after"] == process.tail(2)
        log = tmp_path / "logs" / "wide.log"
        assert [cut, "after"] == log.read_text().splitlines()

    async def test_last_line_without_newline(
        self, make: Make, exits: Exits
    ) -> None:
        """Output that ends without a newline is kept as a last line."""
        code = "import sys; sys.stdout.write('one\\ntwo')"
        process = make("terse", [PY, "-c", code])
        await process.start()
        await wait_until(lambda: exits)

        assert ["one", "two"] == process.tail()

    async def test_env_and_cwd(
        self, make: Make, exits: Exits, tmp_path: Path
    ) -> None:
        """env is merged over the daemon's environment; cwd is used."""
        workdir = tmp_path / "work"
        workdir.mkdir()
        code = (
            "import os\n"
            "print(os.getcwd())\n"
            "print(os.environ['SELFHEAL_TEST'])\n"
            "print(os.environ['PATH'] == os.environ['EXPECTED_PATH'])"
        )
        env = {"SELFHEAL_TEST": "yes", "EXPECTED_PATH": os.environ["PATH"]}
        process = make("envy", [PY, "-c", code], cwd=workdir, env=env)
        await process.start()
        await wait_until(lambda: exits)

        assert [str(workdir), "yes", "True"] == process.tail()


class TestErrors:
    async def test_missing_program(
        self, make: Make, exits: Exits, sup: ProcessSupervisor
    ) -> None:
        """A program that does not exist raises ActionError, nothing more."""
        ghost = make("ghost", ["/nonexistent/program", "--flag"])

        with pytest.raises(ActionError, match="/nonexistent/program") as info:
            await ghost.start()

        assert "start ghost" == info.value.action
        assert ProcessState.EXITED == ghost.state
        assert ghost.pid is None
        assert isinstance(info.value.__cause__, FileNotFoundError)
        other = make("other", SLEEPER)
        assert [await other.start()] == live_children()
        assert [] == exits

    @pytest.mark.parametrize(
        ("options", "where"),
        [
            pytest.param({"command": "sleep 60"}, "command", id="string"),
            pytest.param({"command": []}, "command", id="empty-argv"),
            pytest.param({"command": ["sleep", 60]}, "command", id="int-arg"),
            pytest.param({"name": "../up"}, "name", id="path-name"),
            pytest.param({"name": ""}, "name", id="empty-name"),
            pytest.param({"stop_timeout": -1}, "stop_timeout", id="timeout"),
            pytest.param({"stop_signal": 4096}, "stop_signal", id="signal"),
            pytest.param({"env": {"A": 1}}, "env", id="env"),
            pytest.param(
                {"log_max_bytes": -1}, "log_max_bytes", id="max-bytes"
            ),
            pytest.param({"log_backups": -1}, "log_backups", id="backups"),
            pytest.param({"tail_lines": -1}, "tail_lines", id="tail"),
        ],
    )
    def test_bad_arguments(self, options: dict[str, Any], where: str) -> None:
        """Unusable arguments raise ConfigError naming the parameter."""
        arguments: dict[str, Any] = {"name": "web", "command": SLEEPER}
        arguments.update(options)

        with pytest.raises(ConfigError) as info:
            ManagedProcess(**arguments)

        assert where == info.value.where

    def test_duplicate_name(self, tmp_path: Path) -> None:
        """Adding a second process with a taken name raises ConfigError."""
        sup = ProcessSupervisor()
        sup.add(ManagedProcess("web", SLEEPER, log_dir=tmp_path))

        with pytest.raises(ConfigError, match="'web'"):
            sup.add(ManagedProcess("web", SLEEPER, log_dir=tmp_path))

    def test_unknown_name(self, tmp_path: Path) -> None:
        """get() of an unknown name lists the known ones."""
        sup = ProcessSupervisor()
        sup.add(ManagedProcess("web", SLEEPER, log_dir=tmp_path))

        with pytest.raises(UnknownNameError) as info:
            sup.get("db")

        assert "unknown process 'db' (known: web)" == str(info.value)


class TestOrphans:
    async def test_pid_record(self, make: Make, tmp_path: Path) -> None:
        """A running child is recorded in <state_dir>/pids until stopped."""
        process = make("sleeper", SLEEPER, state_dir=tmp_path / "state")
        pid = await process.start()
        record_path = tmp_path / "state" / "pids" / "sleeper.json"

        record = json.loads(record_path.read_text())

        assert pid == record["pid"] == record["pgid"]
        assert psutil.Process(pid).create_time() == record["createTime"]
        assert SLEEPER == record["command"]
        await process.stop()
        assert not record_path.exists()

    async def test_reaps_group_of_killed_daemon(
        self, no_leftovers: None, tmp_path: Path
    ) -> None:
        """Groups a kill -9'd daemon left behind are killed at next start."""
        state, logs = tmp_path / "state", tmp_path / "logs"
        record = state / "pids" / "family.json"
        log = logs / "family.log"
        daemon = await asyncio.create_subprocess_exec(
            PY,
            "-c",
            DAEMON_CODE,
            str(state),
            str(logs),
            FAMILY_CODE,
            stdout=subprocess.DEVNULL,
        )
        try:
            await wait_until(lambda: log.exists() and log.read_text())
        finally:
            daemon.kill()
            await daemon.wait()
        leader = json.loads(record.read_text())["pid"]
        grandchild = int(log.read_text().split()[0])
        assert not gone(leader)
        assert not gone(grandchild)

        try:
            killed = await reap_orphans(state, grace=1.0)
        finally:
            if not gone(leader):
                kill_group(leader)

        assert [leader] == killed
        await wait_until(lambda: gone(leader) and gone(grandchild))
        assert not record.exists()

    async def test_spares_a_reused_pid(
        self, no_leftovers: None, tmp_path: Path
    ) -> None:
        """A record whose create_time does not match is dropped, not hit."""
        bystander = await asyncio.create_subprocess_exec(
            *SLEEPER, start_new_session=True
        )
        try:
            created = psutil.Process(bystander.pid).create_time()
            pids = tmp_path / "pids"
            pids.mkdir()
            fake = {
                "pid": bystander.pid,
                "pgid": bystander.pid,
                "createTime": created - 1000,
                "command": SLEEPER,
            }
            (pids / "web.json").write_text(json.dumps(fake))

            killed = await ProcessSupervisor().reap_orphans(tmp_path)

            assert [] == killed
            assert bystander.returncode is None
            assert not gone(bystander.pid)
            assert [] == list(pids.iterdir())
        finally:
            bystander.kill()
            await bystander.wait()

    async def test_unreadable_records(self, tmp_path: Path) -> None:
        """Corrupt or missing records are removed without killing anyone."""
        pids = tmp_path / "pids"
        pids.mkdir()
        (pids / "junk.json").write_text("{not json")
        (pids / "partial.json").write_text('{"pid": 12}')

        assert [] == await reap_orphans(tmp_path)
        assert [] == list(pids.iterdir())
        assert [] == await reap_orphans(tmp_path / "missing")


class TestSupervisor:
    async def test_start_all_autostart_only(
        self, make: Make, sup: ProcessSupervisor
    ) -> None:
        """start_all() starts the autostart processes and no others."""
        web = make("web", SLEEPER)
        manual = make("manual", SLEEPER, autostart=False)

        await sup.start_all()

        assert web.running
        assert ProcessState.STOPPED == manual.state
        assert [web.pid] == live_children()

    async def test_start_all_survives_a_missing_program(
        self, make: Make, sup: ProcessSupervisor
    ) -> None:
        """One process that cannot start does not stop the others."""
        ghost = make("ghost", ["/nonexistent/program"])
        web = make("web", SLEEPER)

        await sup.start_all()

        assert web.running
        assert ProcessState.EXITED == ghost.state

    async def test_stop_all_is_concurrent(
        self, make: Make, sup: ProcessSupervisor
    ) -> None:
        """stop_all() waits out the stop timeouts together, not in turn."""
        first = make("first", IGNORES_TERM, stop_timeout=0.5)
        second = make("second", IGNORES_TERM, stop_timeout=0.5)
        await sup.start_all()
        await wait_until(
            lambda: "ready" in first.tail() and "ready" in second.tail()
        )
        started = time.monotonic()

        await sup.stop_all()

        # In turn it would take at least 1.0 s.
        assert time.monotonic() - started < 0.95
        assert [-9, -9] == [p.snapshot().last_exit_code for p in sup]
        assert [] == live_children()

    async def test_snapshot_shape(
        self, make: Make, sup: ProcessSupervisor
    ) -> None:
        """Snapshots serialise to the camelCase API shape."""
        make("web", SLEEPER)
        make("idle", SLEEPER, autostart=False)
        await sup.start_all()

        web, idle = sup.snapshot()

        assert isinstance(web, ProcessSnapshot)
        data = web.to_dict()
        assert [
            "name",
            "pid",
            "state",
            "restarts",
            "startedAt",
            "uptime",
            "lastExitCode",
            "lastExitAt",
        ] == list(data)
        assert "running" == data["state"]
        assert web.pid == data["pid"]
        assert isinstance(data["startedAt"], str)
        assert data["startedAt"].endswith("Z")
        assert isinstance(data["uptime"], float)
        assert {
            "name": "idle",
            "pid": None,
            "state": "stopped",
            "restarts": 0,
            "startedAt": None,
            "uptime": None,
            "lastExitCode": None,
            "lastExitAt": None,
        } == idle.to_dict()

    def test_container(self, tmp_path: Path) -> None:
        """The supervisor has a length, iterates in order, knows names."""
        sup = ProcessSupervisor()
        web = ManagedProcess("web", SLEEPER, log_dir=tmp_path)
        db = ManagedProcess("db", SLEEPER, log_dir=tmp_path)
        sup.add(web)
        sup.add(db)

        assert 2 == len(sup)
        assert [web, db] == list(sup)
        assert "db" in sup
        assert "cache" not in sup
        assert db is sup.get("db")

    async def test_context_manager(
        self, no_leftovers: None, tmp_path: Path
    ) -> None:
        """async with starts the processes and stops them on the way out."""
        process = ManagedProcess("web", SLEEPER, log_dir=tmp_path)
        sup = ProcessSupervisor()
        sup.add(process)

        async with sup:
            assert process.running

        assert ProcessState.STOPPED == process.state


class TestProcessLog:
    def test_lines_split_across_chunks(self, tmp_path: Path) -> None:
        """Lines are rebuilt across read chunks, and runs never mix."""
        log = ProcessLog(tmp_path / "x.log")
        first = log.stream()
        first.feed(b"al")
        first.feed(b"pha\nbe")
        second = log.stream()
        second.feed(b"gamma\n")
        first.feed(b"ta\n")
        first.close()
        log.close()

        assert ["alpha", "gamma", "beta"] == log.tail()
        expected = b"alpha\ngamma\nbeta\n"
        assert expected == (tmp_path / "x.log").read_bytes()

    def test_cut_across_chunks(self, tmp_path: Path) -> None:
        """A long line fed in pieces is cut once; its rest is dropped."""
        log = ProcessLog(tmp_path / "x.log")
        stream = log.stream()
        piece = b"y" * (MAX_LINE_BYTES // 2 + 1)
        stream.feed(piece)
        stream.feed(piece)
        stream.feed(piece + b"\nnext\n")
        log.close()

        cut = "y" * MAX_LINE_BYTES + CUT_MARKER.decode()
        assert [cut, "next"] == log.tail()

    def test_unwritable_file(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A log that cannot be opened is reported once; tail still works."""
        blocker = tmp_path / "logs"
        blocker.write_text("a file where the directory should be")
        log = ProcessLog(blocker / "x.log")

        with caplog.at_level(logging.ERROR, "selfhealing.supervisor"):
            log.stream().feed(b"kept\n")
            log.stream().feed(b"too\n")

        assert ["kept", "too"] == log.tail()
        assert 1 == caplog.text.count("cannot open output log")

    def test_backups_zero_truncates(self, tmp_path: Path) -> None:
        """With no backups a full log starts over in place."""
        log = ProcessLog(tmp_path / "x.log", max_bytes=10, backups=0)
        log.stream().feed(b"12345678\nabc\n")
        log.close()

        assert [tmp_path / "x.log"] == list(tmp_path.iterdir())
        assert b"abc\n" == (tmp_path / "x.log").read_bytes()


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        pytest.param(
            proclog,
            ["CUT_MARKER", "MAX_LINE_BYTES", "LogStream", "ProcessLog"],
            id="proclog",
        ),
        pytest.param(
            supervisor,
            [
                "ExitListener",
                "ManagedProcess",
                "ProcessSnapshot",
                "ProcessState",
                "ProcessSupervisor",
                "reap_orphans",
            ],
            id="supervisor",
        ),
    ],
)
def test_public_names(module: Any, expected: list[str]) -> None:
    """Each module exports exactly its public API, and every name exists."""
    assert expected == module.__all__
    for name in expected:
        assert hasattr(module, name)


def kill_group(pgid: int) -> None:
    """Make sure a test's orphan group is dead, whatever happened."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
