"""CommandCheck: run a program; healthy when it exits with the expected code.

Like a Kubernetes exec probe, or a Nagios plugin. The program runs without
a shell in a session of its own, so a probe that overruns its deadline
kills the whole process group (helpers it started included) and reaps it.
Output goes to a pipe this module owns and reads through ``add_reader``:
only its last 2 KiB are kept, and
a helper that inherits the pipe and outlives the program never holds up
the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from selfhealing.checks._probe import check_timeout, run_probe
from selfhealing.checks._result import CheckResult
from selfhealing.childenv import child_environment
from selfhealing.clock import Clock, system_clock
from selfhealing.exceptions import ConfigError


__all__ = ["OUTPUT_TAIL_BYTES", "CommandCheck"]

OUTPUT_TAIL_BYTES = 2048
# Once the program has exited, its output is already in the pipe; this
# only bounds the wait for a helper process that keeps the pipe open.
_DRAIN_GRACE = 0.1
_DETAIL_TAIL = 200
_MAX_EXIT_CODE = 255


class CommandCheck:
    """Ok when *argv* exits with *expected_exit_code* within *timeout*.

    *env* is merged over the daemon's environment at each probe; *cwd*
    defaults to the daemon's. Standard output and error are captured
    together; on failure their last line or so joins the detail.
    """

    kind = "command"

    __slots__ = (
        "_clock",
        "argv",
        "cwd",
        "env",
        "expected_exit_code",
        "timeout",
    )

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout: float | timedelta = 5.0,
        expected_exit_code: int = 0,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.argv = _argv(argv)
        self.timeout = check_timeout(timeout)
        if (
            isinstance(expected_exit_code, bool)
            or not isinstance(expected_exit_code, int)
            or not 0 <= expected_exit_code <= _MAX_EXIT_CODE
        ):
            raise ConfigError(
                f"must be an exit code 0-{_MAX_EXIT_CODE}, "
                f"got {expected_exit_code!r}",
                where="expected_exit_code",
            )
        self.expected_exit_code = expected_exit_code
        self.cwd = None if cwd is None else Path(cwd)
        self.env = None if env is None else _env(env)
        self._clock = clock

    async def check(self) -> CheckResult:
        return await run_probe(
            self._probe, within=self.timeout, clock=self._clock
        )

    async def aclose(self) -> None:
        """Nothing to release: each probe reaps its own process."""

    async def _probe(self) -> tuple[bool, str]:
        try:
            process, read_fd = await self._spawn()
        except FileNotFoundError as exc:
            return False, self._not_found(exc)
        tail = _Tail(asyncio.get_running_loop(), read_fd)
        try:
            code = await process.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_GRACE):
                    await tail.closed.wait()
        finally:
            # Runs on the deadline and on cancellation alike.
            tail.close()
            if process.returncode is None:
                await _kill_group(process)
        return self._verdict(code, tail.text())

    async def _spawn(self) -> tuple[asyncio.subprocess.Process, int]:
        env = child_environment(self.env)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            # The child holds its own copy; ours would keep EOF away.
            os.close(write_fd)
        return process, read_fd

    def _verdict(self, code: int, output: str) -> tuple[bool, str]:
        if code == self.expected_exit_code:
            return True, f"exit code {code}"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            detail = f"killed by {name}"
        else:
            detail = f"exit code {code}"
        detail += f" (expected {self.expected_exit_code})"
        output = " ".join(output.split())
        if len(output) > _DETAIL_TAIL:
            output = "…" + output[-_DETAIL_TAIL + 1 :]
        return False, f"{detail}: {output}" if output else detail

    def _not_found(self, exc: FileNotFoundError) -> str:
        # subprocess names the directory when chdir failed, else the program.
        if self.cwd is not None and exc.filename in {self.cwd, str(self.cwd)}:
            return f"working directory not found: {self.cwd}"
        return f"command not found: {self.argv[0]}"

    def __repr__(self) -> str:
        return f"CommandCheck({self.argv!r})"


class _Tail:
    """Reads a pipe into its last OUTPUT_TAIL_BYTES; flags end of file.

    A raw descriptor watched with ``add_reader``, which this class alone
    closes, once: uvloop's ``connect_read_pipe`` closes a pipe's descriptor
    twice (MagicStack/uvloop#763), and the second close can hit a file
    another thread has just opened under the same number.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._data = bytearray()
        self.closed = asyncio.Event()
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            self._data += chunk
            # Trim lazily: one copy per 2 KiB of output, not one per read.
            if len(self._data) > 2 * OUTPUT_TAIL_BYTES:
                del self._data[:-OUTPUT_TAIL_BYTES]

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
        self.closed.set()

    def text(self) -> str:
        tail = bytes(self._data[-OUTPUT_TAIL_BYTES:])
        return tail.decode("utf-8", errors="replace")


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the program's whole process group, then reap the program."""
    # The group outlives its leader's exit until the leader is reaped, so
    # the pid still names it here.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _argv(argv: object) -> tuple[str, ...]:
    if isinstance(argv, str | bytes):
        raise ConfigError(
            f"must be a list of strings, not one string: {argv!r} "
            "(commands never run through a shell)",
            where="argv",
        )
    if not isinstance(argv, Sequence) or not argv:
        raise ConfigError(
            f"must be a non-empty list of strings, got {argv!r}",
            where="argv",
        )
    for arg in argv:
        if not isinstance(arg, str) or "\0" in arg:
            raise ConfigError(
                f"must hold strings without NUL bytes, got {arg!r}",
                where="argv",
            )
    if not argv[0]:
        raise ConfigError("the program name is empty", where="argv")
    return tuple(argv)


def _env(env: object) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise ConfigError(
            f"must be a mapping of names to values, got {env!r}",
            where="env",
        )
    checked: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise ConfigError(
                f"{name!r} is not an environment variable name", where="env"
            )
        # Values are not echoed: environments carry secrets.
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(
                f"the value of {name!r} must be a string", where="env"
            )
        checked[name] = value
    return checked
