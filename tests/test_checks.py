from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

import selfhealing.checks

from selfhealing.checks import (
    CallableCheck,
    CheckResult,
    CommandCheck,
    DiskCheck,
    HealthCheck,
    HttpCheck,
    MemoryCheck,
    ProcessCheck,
    TcpCheck,
)
from selfhealing.checks._probe import ProbeBusyError, describe_error
from selfhealing.exceptions import ConfigError
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

# Generous bounds for waiting on real processes; never reached when things
# work.
WAIT = 5.0
SLACK = 0.5


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll *predicate* until true; the kernel offers nothing to await."""
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(name="closed_port")
def _closed_port() -> Iterator[int]:
    # Bound but never listening: connecting is refused, and no other
    # process can take the port while the test runs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(name="listening_port")
async def _listening_port() -> AsyncIterator[int]:
    def accept(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture(name="sleeper")
async def _sleeper() -> AsyncIterator[tuple[str, int]]:
    # A unique argument that no other process on the machine carries.
    token = f"60.{uuid.uuid4().int % 10**9:09d}"
    process = await asyncio.create_subprocess_exec("sleep", token)
    yield token, process.pid
    process.kill()
    await process.wait()


class TestPublicApi:
    def test_all_is_sorted_and_complete(self) -> None:
        """The package exports exactly its public names, sorted."""
        expected = [
            "CallableCheck",
            "CheckResult",
            "CommandCheck",
            "DiskCheck",
            "HealthCheck",
            "HttpCheck",
            "HttpSession",
            "MemoryCheck",
            "ProcessCheck",
            "TcpCheck",
        ]

        assert expected == selfhealing.checks.__all__

    def test_every_builtin_is_a_health_check(self, tmp_path: Path) -> None:
        """Every built-in check satisfies the HealthCheck protocol."""
        checks = [
            HttpCheck("http://127.0.0.1/"),
            TcpCheck("127.0.0.1", 80),
            ProcessCheck(match="x"),
            CommandCheck(["true"]),
            DiskCheck(tmp_path, max_used_percent=90),
            MemoryCheck(max_used_percent=90),
            CallableCheck(lambda: True),
        ]

        assert [True] * 7 == [isinstance(c, HealthCheck) for c in checks]
        assert [
            "http",
            "tcp",
            "process",
            "command",
            "disk",
            "memory",
            "callable",
        ] == [check.kind for check in checks]


class TestCheckResult:
    def test_to_dict_shape(self) -> None:
        """to_dict gives camelCase keys, milliseconds and an ISO time."""
        result = CheckResult(False, 0.0123456, "HTTP 500", 1_767_225_600.0)

        assert {
            "ok": False,
            "latencyMs": 12.346,
            "detail": "HTTP 500",
            "at": "2026-01-01T00:00:00.000Z",
        } == result.to_dict()


class TestDescribeError:
    @pytest.mark.parametrize(
        ("exc", "detail"),
        [
            (ConnectionRefusedError(), "connection refused"),
            (
                OSError(errno.ECONNREFUSED, "Multiple exceptions"),
                "connection refused",
            ),
            (ConnectionResetError(), "connection reset"),
            (
                socket.gaierror(-2, "Name or service not known"),
                "cannot resolve db",
            ),
            (TimeoutError(), "timed out"),
            (ProbeBusyError(2.5), "previous probe still running after 2.500s"),
            (ValueError("bad\nthing"), "ValueError: bad thing"),
            (RuntimeError(), "RuntimeError"),
        ],
        ids=[
            "refused",
            "refused-errno",
            "reset",
            "dns",
            "timeout",
            "busy",
            "other",
            "no-message",
        ],
    )
    def test_details(self, exc: BaseException, detail: str) -> None:
        """Errors read in an operator's words, on one line."""
        assert detail == describe_error(exc, host="db")


class TestTcpCheck:
    async def test_open_port_is_ok(self, listening_port: int) -> None:
        """A port that accepts connections is healthy."""
        result = await TcpCheck("127.0.0.1", listening_port).check()

        assert result.ok
        assert re.fullmatch(r"connected in \d+\.\dms", result.detail)

    async def test_times_come_from_the_injected_clock(
        self, listening_port: int, clock: FakeClock
    ) -> None:
        """Start time, latency and the connect time use the check's clock."""
        result = await TcpCheck(
            "127.0.0.1", listening_port, clock=clock
        ).check()

        assert (True, 0.0, clock.time(), "connected in 0.0ms") == (
            result.ok,
            result.latency,
            result.at,
            result.detail,
        )

    async def test_closed_port_is_refused(self, closed_port: int) -> None:
        """A port nobody listens on reads as a refused connection."""
        result = await TcpCheck("127.0.0.1", closed_port).check()

        assert (False, "connection refused") == (result.ok, result.detail)

    async def test_unresolvable_host(self) -> None:
        """A host name that cannot resolve says which host it was."""
        # Over 255 characters: the resolver refuses it without a query.
        host = ".".join(["a" * 60] * 5) + ".invalid"

        result = await TcpCheck(host, 80).check()

        assert not result.ok
        assert result.detail.startswith("cannot resolve aaaa")

    @pytest.mark.parametrize(
        ("host", "port", "where"),
        [
            ("", 80, "host"),
            ("127.0.0.1", 0, "port"),
            ("127.0.0.1", 65536, "port"),
            ("127.0.0.1", "80", "port"),
        ],
        ids=["empty-host", "port-0", "port-too-big", "port-string"],
    )
    def test_bad_arguments_are_refused(
        self, host: str, port: int, where: str
    ) -> None:
        """A missing host or an impossible port raises ConfigError."""
        with pytest.raises(ConfigError) as caught:
            TcpCheck(host, port)

        assert where == caught.value.where


class TestProcessCheckByPidFile:
    async def test_own_pid_is_running(self, tmp_path: Path) -> None:
        """A pid file naming a live process is healthy."""
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{os.getpid()}\n")

        result = await ProcessCheck(pid_file=pid_file).check()

        assert (True, f"pid {os.getpid()} running") == (
            result.ok,
            result.detail,
        )

    async def test_dead_pid_is_not_running(self, tmp_path: Path) -> None:
        """A pid file naming a process that has exited is unhealthy."""
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(str(process.pid))

        result = await ProcessCheck(pid_file=pid_file).check()

        assert (False, f"pid {process.pid} not running") == (
            result.ok,
            result.detail,
        )

    async def test_zombie_is_not_running(self, tmp_path: Path) -> None:
        """A process that exited but was not reaped is not alive."""
        child = subprocess.Popen(["true"])
        try:
            # Wait for the exit but leave the child unreaped: a zombie.
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
            pid_file = tmp_path / "app.pid"
            pid_file.write_text(str(child.pid))

            result = await ProcessCheck(pid_file=pid_file).check()
        finally:
            child.wait()

        assert (False, f"pid {child.pid} is a zombie") == (
            result.ok,
            result.detail,
        )

    @pytest.mark.parametrize(
        ("content", "detail"),
        [
            ("not-a-pid\n", "holds 'not-a-pid', not a pid"),
            ("-5", "holds '-5', not a pid"),
            ("0", "holds '0', not a pid"),
            ("  \n", "is empty"),
        ],
        ids=["garbled", "negative", "zero", "empty"],
    )
    async def test_unusable_pid_file(
        self, tmp_path: Path, content: str, detail: str
    ) -> None:
        """A pid file without a usable pid fails and says what it holds."""
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(content)

        result = await ProcessCheck(pid_file=pid_file).check()

        assert (False, f"pid file {pid_file} {detail}") == (
            result.ok,
            result.detail,
        )

    async def test_missing_pid_file(self, tmp_path: Path) -> None:
        """A missing pid file fails and names the file."""
        pid_file = tmp_path / "nope.pid"

        result = await ProcessCheck(pid_file=pid_file).check()

        assert (False, f"pid file {pid_file} not found") == (
            result.ok,
            result.detail,
        )


class TestProcessCheckByMatch:
    async def test_matching_process_is_running(
        self, sleeper: tuple[str, int]
    ) -> None:
        """A process whose command line holds the string is found."""
        token, pid = sleeper

        result = await ProcessCheck(match=f"sleep {token}").check()

        assert (True, f"1 process matches 'sleep {token}' (pid {pid})") == (
            result.ok,
            result.detail,
        )

    async def test_no_match_is_not_running(self) -> None:
        """No process with the string in its command line is unhealthy."""
        token = f"no-such-process-{uuid.uuid4()}"

        result = await ProcessCheck(match=token).check()

        assert (False, f"no process matches {token!r}") == (
            result.ok,
            result.detail,
        )


class TestProcessCheckByCallable:
    async def test_live_pid_is_running(self) -> None:
        """A callable naming a live pid is healthy."""
        result = await ProcessCheck(is_running=os.getpid).check()

        assert (True, f"pid {os.getpid()} running") == (
            result.ok,
            result.detail,
        )

    async def test_none_is_not_running(self) -> None:
        """A callable returning None means the process is not running."""
        result = await ProcessCheck(is_running=lambda: None).check()

        assert (False, "process not running") == (result.ok, result.detail)

    async def test_a_raising_callable_is_a_failed_probe(self) -> None:
        """A supervisor view that raises fails the probe, not the caller."""

        def broken() -> int:
            raise LookupError("no such program")

        result = await ProcessCheck(is_running=broken).check()

        assert (False, "LookupError: no such program") == (
            result.ok,
            result.detail,
        )

    @pytest.mark.parametrize(
        "kwargs",
        [{}, {"match": "a", "pid_file": "b"}, {"match": ""}],
        ids=["none", "two", "empty-match"],
    )
    def test_exactly_one_source_is_required(
        self, kwargs: dict[str, object]
    ) -> None:
        """Giving no way, two ways or an empty match raises ConfigError."""
        with pytest.raises(ConfigError):
            ProcessCheck(**kwargs)  # type: ignore[arg-type]


class TestCommandCheck:
    async def test_exit_zero_is_ok(self) -> None:
        """A command exiting 0 is healthy."""
        result = await CommandCheck(["true"]).check()

        assert (True, "exit code 0") == (result.ok, result.detail)

    async def test_failure_shows_the_output_tail(self) -> None:
        """A failing command's exit code and last output make the detail."""
        script = "echo starting; echo 'error: disk on fire' >&2; exit 1"

        result = await CommandCheck(["sh", "-c", script]).check()

        assert (
            False,
            "exit code 1 (expected 0): starting error: disk on fire",
        ) == (result.ok, result.detail)

    async def test_expected_exit_code(self) -> None:
        """The expected exit code, not only 0, is healthy."""
        result = await CommandCheck(
            ["sh", "-c", "exit 3"], expected_exit_code=3
        ).check()

        assert (True, "exit code 3") == (result.ok, result.detail)

    async def test_only_the_tail_of_long_output_is_kept(self) -> None:
        """Long output is cut to its end, so the last words survive."""
        script = (
            f"{sys.executable} -c \"print('x' * 100_000)\"; "
            "echo last words; exit 1"
        )

        result = await CommandCheck(["sh", "-c", script]).check()

        assert result.detail.endswith("x last words")
        assert len(result.detail) < 250

    async def test_killed_by_a_signal(self) -> None:
        """A command killed by a signal names the signal."""
        result = await CommandCheck(["sh", "-c", "kill -TERM $$"]).check()

        assert (False, "killed by SIGTERM (expected 0)") == (
            result.ok,
            result.detail,
        )

    async def test_timeout_kills_the_process_group(
        self, tmp_path: Path
    ) -> None:
        """On timeout the command and the helpers it started are killed."""
        pid_file = tmp_path / "helper.pid"
        script = f"sleep 60 & echo $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"
        check = CommandCheck(["sh", "-c", script], timeout=0.5)

        started = time.monotonic()
        result = await check.check()
        elapsed = time.monotonic() - started

        assert (False, "timed out after 0.500s") == (result.ok, result.detail)
        assert elapsed < 0.5 + SLACK
        helper = int(pid_file.read_text())
        await wait_until(lambda: gone(helper))

    async def test_cancellation_kills_the_process_group(
        self, tmp_path: Path
    ) -> None:
        """A cancelled probe re-raises CancelledError and leaves no process."""
        pid_file = tmp_path / "helper.pid"
        script = f"sleep 60 & echo $! > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; wait"
        probe = asyncio.create_task(
            CommandCheck(["sh", "-c", script], timeout=30).check()
        )
        await wait_until(pid_file.exists)

        probe.cancel()

        with pytest.raises(asyncio.CancelledError):
            await probe
        helper = int(pid_file.read_text())
        await wait_until(lambda: gone(helper))

    async def test_a_helper_holding_the_pipe_does_not_hold_the_verdict(
        self, tmp_path: Path
    ) -> None:
        """A background helper that keeps stdout open does not delay the result."""
        pid_file = tmp_path / "helper.pid"
        script = f"sleep 60 & echo $! > {pid_file}; exit 0"
        started = time.monotonic()
        try:
            result = await CommandCheck(["sh", "-c", script]).check()
        finally:
            os.kill(int(pid_file.read_text()), 9)

        assert (True, "exit code 0") == (result.ok, result.detail)
        assert time.monotonic() - started < 1 + SLACK

    async def test_program_not_found(self) -> None:
        """A program that does not exist is a failed probe, not an error."""
        result = await CommandCheck(["selfhealing-no-such-program"]).check()

        assert (False, "command not found: selfhealing-no-such-program") == (
            result.ok,
            result.detail,
        )

    async def test_missing_working_directory(self, tmp_path: Path) -> None:
        """A working directory that does not exist is named in the detail."""
        cwd = tmp_path / "gone"

        result = await CommandCheck(["true"], cwd=cwd).check()

        assert (False, f"working directory not found: {cwd}") == (
            result.ok,
            result.detail,
        )

    async def test_env_is_merged_over_the_environment(
        self, tmp_path: Path
    ) -> None:
        """Extra variables reach the command, PATH still finds programs, cwd applies."""
        check = CommandCheck(
            ["sh", "-c", 'echo "$PROBE_GREETING from $(pwd)"; exit 1'],
            env={"PROBE_GREETING": "hello"},
            cwd=tmp_path,
        )

        result = await check.check()

        assert f"exit code 1 (expected 0): hello from {tmp_path}" == (
            result.detail
        )

    @pytest.mark.parametrize(
        ("argv", "kwargs", "where"),
        [
            ("echo hi", {}, "argv"),
            ([], {}, "argv"),
            (["echo", 1], {}, "argv"),
            ([""], {}, "argv"),
            (["true"], {"expected_exit_code": 256}, "expected_exit_code"),
            (["true"], {"env": {"A=B": "x"}}, "env"),
            (["true"], {"timeout": -1}, "timeout"),
        ],
        ids=[
            "shell-string",
            "empty",
            "not-a-string",
            "empty-program",
            "exit-code",
            "env-name",
            "timeout",
        ],
    )
    def test_bad_arguments_are_refused(
        self, argv: object, kwargs: dict[str, object], where: str
    ) -> None:
        """A shell string, an empty argv or bad options raise ConfigError."""
        with pytest.raises(ConfigError) as caught:
            CommandCheck(argv, **kwargs)  # type: ignore[arg-type]

        assert where == caught.value.where


class TestDiskCheck:
    async def test_under_the_ceiling_is_ok(self, tmp_path: Path) -> None:
        """A filesystem below its ceiling is healthy."""
        result = await DiskCheck(tmp_path, max_used_percent=100).check()

        assert result.ok
        assert re.fullmatch(
            rf"disk {re.escape(str(tmp_path))} \d+\.\d% used \(max 100%\)",
            result.detail,
        )

    async def test_over_the_ceiling_is_not_ok(self, tmp_path: Path) -> None:
        """A filesystem above its ceiling fails with the percentage used."""
        (tmp_path / "data").write_bytes(b"x" * 4096)

        result = await DiskCheck(tmp_path, max_used_percent=0).check()

        assert not result.ok
        assert re.fullmatch(
            rf"disk {re.escape(str(tmp_path))} \d+\.\d% used \(max 0%\)",
            result.detail,
        )

    async def test_inodes_are_checked_when_asked(self, tmp_path: Path) -> None:
        """With an inode ceiling the detail reports inodes too."""
        check = DiskCheck(
            tmp_path, max_used_percent=100, max_inodes_percent=100
        )

        result = await check.check()

        assert result.ok
        assert re.search(
            r", (inodes \d+\.\d% used \(max 100%\)|inodes not counted)$",
            result.detail,
        )

    async def test_missing_path_is_not_ok(self, tmp_path: Path) -> None:
        """A path that does not exist fails and names the path."""
        missing = tmp_path / "nope"

        result = await DiskCheck(missing, max_used_percent=90).check()

        assert (False, f"No such file or directory: {missing}") == (
            result.ok,
            result.detail,
        )

    @pytest.mark.parametrize(
        "percent", [-1, 101, float("nan"), "90", True], ids=str
    )
    def test_bad_percentages_are_refused(self, percent: object) -> None:
        """A ceiling outside 0-100 or not a number raises ConfigError."""
        with pytest.raises(ConfigError) as caught:
            DiskCheck("/", max_used_percent=percent)  # type: ignore[arg-type]

        assert "max_used_percent" == caught.value.where


class TestMemoryCheck:
    async def test_under_the_ceiling_is_ok(self) -> None:
        """Memory below its ceiling is healthy."""
        result = await MemoryCheck(max_used_percent=100).check()

        assert result.ok
        assert re.fullmatch(
            r"memory \d+\.\d% used \(max 100%\)", result.detail
        )

    async def test_over_the_ceiling_is_not_ok(self) -> None:
        """Memory above its ceiling fails with the percentage used."""
        result = await MemoryCheck(max_used_percent=0).check()

        assert not result.ok
        assert re.fullmatch(r"memory \d+\.\d% used \(max 0%\)", result.detail)


class TestCallableCheck:
    async def test_sync_true_runs_in_a_worker_thread(self) -> None:
        """A sync function returning True is healthy, run off the loop thread."""
        threads: list[int] = []

        def probe() -> bool:
            threads.append(threading.get_ident())
            return True

        result = await CallableCheck(probe).check()

        assert (True, "ok") == (result.ok, result.detail)
        assert threading.get_ident() not in threads

    async def test_sync_false_is_not_ok(self) -> None:
        """A function returning False is unhealthy."""
        result = await CallableCheck(lambda: False).check()

        assert (False, "returned False") == (result.ok, result.detail)

    async def test_async_true_is_ok(self) -> None:
        """An async function returning True is healthy."""

        async def probe() -> bool:
            return True

        result = await CallableCheck(probe).check()

        assert (True, "ok") == (result.ok, result.detail)

    async def test_returned_check_result_lends_verdict_and_detail(
        self, clock: FakeClock
    ) -> None:
        """A returned CheckResult gives ok and detail; times are the check's own."""

        async def probe() -> CheckResult:
            clock.advance(0.25)
            return CheckResult(False, 99.0, "queue depth 5000", 0.0)

        result = await CallableCheck(probe, clock=clock).check()

        assert CheckResult(
            False, 0.25, "queue depth 5000", clock.time() - 0.25
        ) == (result)

    async def test_other_return_values_are_not_ok(self) -> None:
        """Returning neither a bool nor a CheckResult is a failed probe."""
        result = await CallableCheck(lambda: None).check()

        assert (
            False,
            "returned None, expected a bool or a CheckResult",
        ) == (result.ok, result.detail)

    @pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
    async def test_raising_is_not_ok(self, is_async: bool) -> None:
        """An exception becomes the detail as 'ExcType: message'."""

        def sync_probe() -> bool:
            raise ConnectionError("db down")

        async def async_probe() -> bool:
            raise ConnectionError("db down")

        check = CallableCheck(async_probe if is_async else sync_probe)

        result = await check.check()

        assert (False, "ConnectionError: db down") == (
            result.ok,
            result.detail,
        )

    async def test_async_timeout(self) -> None:
        """An async function past its deadline fails as timed out, on time."""

        async def probe() -> bool:
            await asyncio.Event().wait()
            return True

        started = time.monotonic()
        result = await CallableCheck(probe, timeout=0.1).check()

        assert (False, "timed out after 0.100s") == (result.ok, result.detail)
        assert time.monotonic() - started < 0.1 + SLACK

    async def test_sync_timeout_holds_one_thread_only(self) -> None:
        """A stuck sync function fails later probes at once instead of piling up threads."""
        gate = threading.Event()
        calls: list[int] = []

        def probe() -> bool:
            calls.append(1)
            return gate.wait(WAIT)

        check = CallableCheck(probe, timeout=0.1)
        try:
            first = await check.check()
            second = await check.check()
        finally:
            gate.set()

        assert "timed out after 0.100s" == first.detail
        assert second.detail.startswith("previous probe still running after")
        assert [1] == calls
        await wait_until(lambda: not check._slot.busy)
        assert (await check.check()).ok

    async def test_cancellation_propagates(self) -> None:
        """Cancelling a probe raises CancelledError instead of a result."""
        started = asyncio.Event()

        async def probe() -> bool:
            started.set()
            await asyncio.Event().wait()
            return True

        task = asyncio.create_task(CallableCheck(probe).check())
        await started.wait()

        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task

    def test_timeout_accepts_a_timedelta(self) -> None:
        """A timedelta timeout is converted to seconds once."""
        check = CallableCheck(
            lambda: True, timeout=timedelta(milliseconds=250)
        )

        assert 0.25 == check.timeout

    def test_name_defaults_to_the_function_name(self) -> None:
        """Without a name the check is named after its function."""

        def database_ready() -> bool:
            return True

        assert CallableCheck(database_ready).name.endswith("database_ready")

    def test_not_callable_is_refused(self) -> None:
        """A non-callable raises ConfigError naming fn."""
        with pytest.raises(ConfigError) as caught:
            CallableCheck(True)  # type: ignore[arg-type]

        assert "fn" == caught.value.where
