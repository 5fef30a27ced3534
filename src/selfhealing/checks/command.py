"""CommandCheck: run a program; healthy when it exits with the expected code.

Like a Kubernetes exec probe, or a Nagios plugin. The program runs without
a shell in a session of its own, so a probe that overruns its deadline
kills the whole process group (helpers it started included) and reaps it.
Output goes to a pipe this module owns: only its last 2 KiB are kept, and
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
from typing import BinaryIO

from selfhealing.checks._probe import check_timeout, run_probe
from selfhealing.checks._result import CheckResult
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
            process, pipe = await self._spawn()
        except FileNotFoundError as exc:
            return False, self._not_found(exc)
        tail = _Tail()
        transport: asyncio.ReadTransport | None = None
        try:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.connect_read_pipe(lambda: tail, pipe)
            code = await process.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_GRACE):
                    await tail.closed.wait()
        finally:
            # Runs on the deadline and on cancellation alike.
            if transport is None:
                pipe.close()
            else:
                transport.close()
            if process.returncode is None:
                await _kill_group(process)
        return self._verdict(code, tail.text())

    async def _spawn(self) -> tuple[asyncio.subprocess.Process, BinaryIO]:
        env = None if self.env is None else {**os.environ, **self.env}
        read_fd, write_fd = os.pipe()
        pipe = os.fdopen(read_fd, "rb", buffering=0)
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
            pipe.close()
            raise
        finally:
            # The child holds its own copy; ours would keep EOF away.
            os.close(write_fd)
        return process, pipe

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


class _Tail(asyncio.Protocol):
    """Keeps the last OUTPUT_TAIL_BYTES of a pipe; flags its closing."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.closed = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self._data += data
        # Trim lazily so a chatty program costs one copy per 2 KiB, not
        # one per read.
        if len(self._data) > 2 * OUTPUT_TAIL_BYTES:
            del self._data[:-OUTPUT_TAIL_BYTES]

    def connection_lost(self, _exc: Exception | None) -> None:
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
