"""ProcessCheck: is the process alive (and not a zombie)?

Three ways to name the process: a pid file (daemons that write one), a
command-line substring (``pgrep -f``), or a callable returning the pid of
a process the daemon supervises itself. File reads and the /proc scan run
in a worker thread, so a slow /proc or a stuck mount never blocks the loop.
"""

from __future__ import annotations

import functools
import os

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from selfhealing.checks._probe import Probe, check_timeout, run_probe
from selfhealing.checks._result import CheckResult
from selfhealing.checks._thread import ThreadSlot
from selfhealing.clock import Clock, system_clock
from selfhealing.exceptions import ConfigError


__all__ = ["ProcessCheck"]

# A pid is a handful of digits; anything longer is not a pid file.
_PID_FILE_READ = 64
_PIDS_SHOWN = 5
_MAX_PID = 2**31 - 1


class ProcessCheck:
    """Ok when the named process exists and is not a zombie.

    Give exactly one of *pid_file*, *match* (a substring of the command
    line, arguments joined by spaces; the daemon's own process is never
    matched) or *is_running* (returns a pid, or None when not running).
    """

    kind = "process"

    __slots__ = (
        "_clock",
        "_run",
        "_slot",
        "_what",
        "timeout",
    )

    def __init__(
        self,
        *,
        pid_file: str | os.PathLike[str] | None = None,
        match: str | None = None,
        is_running: Callable[[], int | None] | None = None,
        timeout: float | timedelta = 1.0,
        clock: Clock = system_clock,
    ) -> None:
        given = [
            name
            for name, value in (
                ("pid_file", pid_file),
                ("match", match),
                ("is_running", is_running),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one of pid_file, match, is_running "
                f"(got {', '.join(given) or 'none'})",
                where="/".join(given or ["pid_file", "match", "is_running"]),
            )
        if pid_file is not None and (
            not isinstance(pid_file, str | os.PathLike) or not str(pid_file)
        ):
            raise ConfigError(
                f"must be a path, got {pid_file!r}", where="pid_file"
            )
        if match is not None and (not isinstance(match, str) or not match):
            raise ConfigError(
                f"must be a non-empty string, got {match!r}", where="match"
            )
        if is_running is not None and not callable(is_running):
            raise ConfigError(
                f"must be callable, got {is_running!r}", where="is_running"
            )
        self.timeout = check_timeout(timeout)
        self._clock = clock
        self._slot = ThreadSlot(clock)
        self._run: Probe
        if is_running is not None:
            self._run = functools.partial(_ask_supervisor, is_running)
            self._what = f"is_running={is_running!r}"
        elif match is not None:
            self._run = functools.partial(
                self._slot.run, functools.partial(_scan, match)
            )
            self._what = f"match={match!r}"
        elif pid_file is not None:
            path = Path(pid_file)
            self._run = functools.partial(
                self._slot.run, functools.partial(_check_pid_file, path)
            )
            self._what = f"pid_file={str(path)!r}"

    async def check(self) -> CheckResult:
        return await run_probe(
            self._run, within=self.timeout, clock=self._clock
        )

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"ProcessCheck({self._what})"


async def _ask_supervisor(
    is_running: Callable[[], int | None],
) -> tuple[bool, str]:
    # The supervisor's view lives on the loop: read it here, and only ask
    # the kernel about the one pid it names.
    pid = is_running()
    if pid is None:
        return False, "process not running"
    return _alive(pid)


def _alive(pid: int) -> tuple[bool, str]:
    if (
        isinstance(pid, bool)
        or not isinstance(pid, int)
        or not 0 < pid <= _MAX_PID
    ):
        return False, f"{pid!r} is not a pid"
    try:
        status = psutil.Process(pid).status()
    except psutil.ZombieProcess:
        return False, f"pid {pid} is a zombie"
    except psutil.NoSuchProcess:
        return False, f"pid {pid} not running"
    except psutil.AccessDenied:
        # It exists; we may just not read another user's process.
        return True, f"pid {pid} running"
    if status == psutil.STATUS_ZOMBIE:
        return False, f"pid {pid} is a zombie"
    return True, f"pid {pid} running"


def _check_pid_file(path: Path) -> tuple[bool, str]:
    try:
        with path.open("rb") as file:
            raw = file.read(_PID_FILE_READ + 1)
    except FileNotFoundError:
        return False, f"pid file {path} not found"
    except OSError as exc:
        return False, f"cannot read pid file {path}: {exc.strerror or exc}"
    text = raw.decode("ascii", errors="replace").strip()
    if not text:
        return False, f"pid file {path} is empty"
    if (
        len(raw) > _PID_FILE_READ
        or not text.isdigit()
        or not 0 < int(text) <= _MAX_PID
    ):
        return False, f"pid file {path} holds {text[:20]!r}, not a pid"
    return _alive(int(text))


def _scan(match: str) -> tuple[bool, str]:
    own = os.getpid()
    pids: list[int] = []
    for process in psutil.process_iter(["cmdline"]):
        pid = int(process.pid)
        cmdline = process.info["cmdline"]
        # Zombies and kernel threads have no command line.
        if pid != own and cmdline and match in " ".join(cmdline):
            pids.append(pid)
    if not pids:
        return False, f"no process matches {match!r}"
    shown = ", ".join(str(pid) for pid in pids[:_PIDS_SHOWN])
    more = ", ..." if len(pids) > _PIDS_SHOWN else ""
    found = "1 process matches" if len(pids) == 1 else f"{len(pids)} match"
    return True, f"{found} {match!r} (pid {shown}{more})"
