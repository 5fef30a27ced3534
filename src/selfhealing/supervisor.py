"""Supervised processes: start, stop, restart, and report exits at once.

A supervisord-like process manager on asyncio, with one difference that
matters: it never restarts a crashed process by itself. An exit nobody
asked for is reported at once to the exit listeners, and the healing engine
decides whether and when to call :meth:`ManagedProcess.restart`, so a crash
loop runs into backoff and dormant mode instead of a restart storm.

Each child leads its own session and process group, and stop and kill
signal the whole group, so grandchildren go too. Exits are noticed by the
subprocess protocol's ``process_exited()`` callback, neither by a polling
loop nor by ``Process.wait()``: on Python 3.11 ``wait()`` also waits for
the pipes to close, so a grandchild holding stdout would hide the death of
its parent.

With a *state_dir*, each running child is recorded in
``<state_dir>/pids/<name>.json``. :func:`reap_orphans` kills the groups a
killed daemon left behind, and checks the recorded ``create_time`` so that
a process which merely reused a recorded pid is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import re
import signal
import subprocess

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar, cast

import psutil  # type: ignore[import-untyped]

from selfhealing.childenv import child_environment
from selfhealing.clock import Clock, seconds, system_clock, utc_iso
from selfhealing.exceptions import ActionError, ConfigError, UnknownNameError
from selfhealing.proclog import LogStream, ProcessLog


__all__ = [
    "ExitListener",
    "ManagedProcess",
    "ProcessSnapshot",
    "ProcessState",
    "ProcessSupervisor",
    "reap_orphans",
]

_log = logging.getLogger("selfhealing.supervisor")
_T = TypeVar("_T")

#: Seconds to wait for a child to vanish after SIGKILL before giving up.
KILL_WAIT = 5.0
#: Seconds stop() waits for output still in the pipe after the exit.
DRAIN_GRACE = 1.0
#: Seconds an exit report waits for the last output, so listeners that
#: read tail() see it. Only a descendant holding stdout makes it wait.
EXIT_DRAIN_GRACE = 0.05
#: First and longest pause between checks for group members, which are
#: not our children and so cannot be waited for (each check may scan
#: /proc, so the pause doubles up to the maximum).
GROUP_POLL = 0.01
MAX_GROUP_POLL = 0.2
#: Default seconds reap_orphans() allows between SIGTERM and SIGKILL.
ORPHAN_GRACE = 2.0
_CREATE_TIME_TOLERANCE = 0.01
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LOG_PARAMETERS = {"max_bytes": "log_max_bytes", "backups": "log_backups"}


class ProcessState(StrEnum):
    """Where a managed process is in its life.

    EXITED means it ended without being asked to; STOPPED means it was
    stopped on purpose (or never started).
    """

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    """One process at one moment. Times are wall epochs, uptime seconds.

    *last_exit_code* is negative when a signal ended the process (-9 for
    SIGKILL), as asyncio reports it.
    """

    name: str
    pid: int | None
    state: ProcessState
    restarts: int
    started_at: float | None
    uptime: float | None
    last_exit_code: int | None
    last_exit_at: float | None

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "name": self.name,
            "pid": self.pid,
            "state": str(self.state),
            "restarts": self.restarts,
            "startedAt": utc_iso(self.started_at),
            "uptime": self.uptime,
            "lastExitCode": self.last_exit_code,
            "lastExitAt": utc_iso(self.last_exit_at),
        }


ExitListener = Callable[["ManagedProcess", int], object]
"""Called on the loop as ``listener(process, returncode)`` for an exit that
nobody asked for. An awaitable result is run as a task."""


@dataclass(slots=True, eq=False)
class _Run:
    """One spawned child and its pipe (mutated on the loop only)."""

    stream: LogStream
    exited: asyncio.Future[int]
    drained: asyncio.Future[None]
    closed: asyncio.Future[None]
    transport: asyncio.SubprocessTransport | None = None
    pid: int = 0
    started_at: float = 0.0
    started_mono: float = 0.0
    returncode: int | None = None
    stopping: bool = False
    # Whether the group outlived its leader; if not, the pgid is never
    # signalled again, since the number may then belong to someone else.
    leftovers: bool = False

    def close(self) -> None:
        self.stream.close()
        if self.transport is not None:
            self.transport.close()


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Feeds output to the run's log stream and reports the exit."""

    def __init__(self, run: _Run, on_exit: Callable[[_Run, int], None]):
        self._run = run
        self._on_exit = on_exit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        process = cast("asyncio.SubprocessTransport", transport)
        self._run.transport = process
        self._run.pid = process.get_pid()

    def pipe_data_received(self, _fd: int, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._run.stream.feed(data)

    def pipe_connection_lost(self, _fd: int, _exc: Exception | None) -> None:
        self._run.stream.close()
        _resolve(self._run.drained, None)

    def process_exited(self) -> None:
        transport = self._run.transport
        code = None if transport is None else transport.get_returncode()
        # asyncio sets the code before this call; -1 only guards the type.
        self._on_exit(self._run, -1 if code is None else code)

    def connection_lost(self, _exc: Exception | None) -> None:
        _resolve(self._run.closed, None)
        if self._run.transport is not None:
            self._run.transport.close()


class ManagedProcess:
    """One supervised program: argv, environment, stop policy and output.

    Operations on one process are serialised, so concurrent start, stop and
    restart calls never leave two children running. Output goes to
    ``<log_dir>/<name>.log`` (rotated) and to an in-memory tail.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float | timedelta = 10.0,
        autostart: bool = True,
        log_dir: Path | str = "logs",
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 3,
        tail_lines: int = 200,
        state_dir: Path | str | None = None,
        clock: Clock = system_clock,
        on_exit: ExitListener | None = None,
    ) -> None:
        self.name = _check_name(name)
        self.command = _check_command(command)
        self.cwd = None if cwd is None else Path(cwd)
        self.env = _check_env(env)
        self.stop_signal = _check_signal(stop_signal)
        self.stop_timeout = seconds(stop_timeout, name="stop_timeout")
        if self.stop_timeout < 0:
            raise ConfigError(
                f"must not be negative, got {self.stop_timeout}",
                where="stop_timeout",
            )
        self.autostart = autostart
        try:
            self.log = ProcessLog(
                Path(log_dir).absolute() / f"{name}.log",
                max_bytes=log_max_bytes,
                backups=log_backups,
                tail_lines=tail_lines,
            )
        except ConfigError as error:
            where = error.where or ""
            raise ConfigError(
                error.detail, where=_LOG_PARAMETERS.get(where, where)
            ) from None
        self.state_dir = (
            None if state_dir is None else Path(state_dir).absolute()
        )
        self._clock = clock
        self._listeners: list[ExitListener] = []
        if on_exit is not None:
            self._listeners.append(on_exit)
        self._lock = asyncio.Lock()
        self._run: _Run | None = None
        self._draining: set[_Run] = set()
        self._tasks: set[asyncio.Future[object]] = set()
        self._restarting: asyncio.Task[int] | None = None
        self._state = ProcessState.STOPPED
        self._restarts = 0
        self._started_at: float | None = None
        self._last_exit_code: int | None = None
        self._last_exit_at: float | None = None

    @property
    def state(self) -> ProcessState:
        """Where the process is in its life now."""
        return self._state

    @property
    def running(self) -> bool:
        """Whether the child is up and not being stopped."""
        return self._state is ProcessState.RUNNING

    @property
    def pid(self) -> int | None:
        """The live child's pid, or None when there is none."""
        run = self._run
        alive = self._state in {ProcessState.RUNNING, ProcessState.STOPPING}
        return run.pid if alive and run is not None else None

    @property
    def restarts(self) -> int:
        """How many times restart() has brought up a new child."""
        return self._restarts

    @property
    def log_path(self) -> Path:
        """The current output log, ``<log_dir>/<name>.log``."""
        return self.log.path

    def add_exit_listener(self, listener: ExitListener) -> None:
        """Also call *listener* for each exit that nobody asked for."""
        self._listeners.append(listener)

    async def start(self) -> int:
        """Start the child and return its pid (the live one if running).

        Raises ActionError when the program cannot be run; the process is
        then EXITED with no pid.
        """
        async with self._lock:
            run = self._run
            if run is not None and run.returncode is None:
                return run.pid
            if run is not None:
                await self._retire(run)
            return await self._spawn()

    async def stop(self) -> int | None:
        """Stop gracefully: stop_signal to the group, SIGKILL if it lingers.

        The group gets ``stop_timeout`` seconds in all; members that outlive
        the leader count too. Returns the exit code, or None if the process
        was not running.
        """
        async with self._lock:
            run = self._run
            code = None
            if run is not None:
                code = await self._retire(run)
            self._state = ProcessState.STOPPED
            await self._drain()
            self.log.close()
            return code

    async def restart(self) -> int:
        """Stop (if running), start, count it, and return the new pid.

        A restart asked for while another is under way joins it: both get
        the same new child. Cancelling a caller does not cancel a restart
        already under way.
        """
        task = self._restarting
        if task is None or task.done():
            loop = asyncio.get_running_loop()
            task = loop.create_task(self._restart())
            self._restarting = task
            task.add_done_callback(self._restart_done)
        return await asyncio.shield(task)

    def snapshot(self) -> ProcessSnapshot:
        """The process's state and counters, frozen."""
        pid = self.pid
        run = self._run
        uptime = None
        if pid is not None and run is not None:
            uptime = max(self._clock.monotonic() - run.started_mono, 0.0)
        return ProcessSnapshot(
            name=self.name,
            pid=pid,
            state=self._state,
            restarts=self._restarts,
            started_at=self._started_at,
            uptime=uptime,
            last_exit_code=self._last_exit_code,
            last_exit_at=self._last_exit_at,
        )

    def tail(self, lines: int = 50) -> list[str]:
        """The last *lines* lines of output, from memory, oldest first."""
        return self.log.tail(lines)

    async def _restart(self) -> int:
        async with self._lock:
            run = self._run
            if run is not None:
                await self._retire(run)
            pid = await self._spawn()
            self._restarts += 1
            return pid

    def _restart_done(self, task: asyncio.Task[int]) -> None:
        if self._restarting is task:
            self._restarting = None
        if not task.cancelled():
            # Callers get the error and _spawn has logged it: asyncio
            # need not warn that nobody retrieved it.
            task.exception()

    async def _spawn(self) -> int:
        loop = asyncio.get_running_loop()
        run = _Run(
            stream=self.log.stream(),
            exited=loop.create_future(),
            drained=loop.create_future(),
            closed=loop.create_future(),
        )
        self._run = run
        self._state = ProcessState.STARTING
        env = child_environment(self.env)
        try:
            await loop.subprocess_exec(
                lambda: _ChildProtocol(run, self._exited),
                *self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
            )
        except (OSError, ValueError, subprocess.SubprocessError) as error:
            self._abandon(run, ProcessState.EXITED)
            _log.error("cannot start %s: %s", self.name, error)
            raise ActionError(
                f"start {self.name}",
                f"cannot run {list(self.command)!r}: {error}",
            ) from error
        except BaseException:
            self._abandon(run, ProcessState.STOPPED)
            raise
        run.started_at = self._clock.time()
        run.started_mono = self._clock.monotonic()
        self._started_at = run.started_at
        if run.returncode is None:
            self._state = ProcessState.RUNNING
            self._write_pidfile(run)
        _log.info(
            "started %s",
            self.name,
            extra={"facts": {"pid": run.pid, "command": self.command}},
        )
        return run.pid

    def _abandon(self, run: _Run, state: ProcessState) -> None:
        if self._run is run:
            self._run = None
        self._state = state
        run.stream.close()
        if not self._draining:
            self.log.close()

    def _exited(self, run: _Run, code: int) -> None:
        run.returncode = code
        _resolve(run.exited, code)
        if run.stopping or run is not self._run:
            return
        self._state = ProcessState.EXITED
        self._last_exit_code = code
        self._last_exit_at = self._clock.time()
        run.leftovers = _group_exists(run.pid)
        self._remove_pidfile()
        _log.warning(
            "%s exited unexpectedly with code %d",
            self.name,
            code,
            extra={"facts": {"pid": run.pid, "leftovers": run.leftovers}},
        )
        if run.drained.done():
            self._notify(run, code)
        else:
            self._track(self._notify_when_drained(run, code))

    async def _notify_when_drained(self, run: _Run, code: int) -> None:
        await asyncio.wait({run.drained}, timeout=EXIT_DRAIN_GRACE)
        self._notify(run, code)

    def _notify(self, run: _Run, code: int) -> None:
        # A stop or restart since the exit made the report moot.
        if run.stopping or run is not self._run:
            return
        for listener in tuple(self._listeners):
            try:
                result = listener(self, code)
            except Exception:
                _log.exception("exit listener of %s failed", self.name)
                continue
            if inspect.isawaitable(result):
                self._track(result)

    def _track(self, awaitable: Awaitable[object]) -> None:
        future = asyncio.ensure_future(awaitable)
        self._tasks.add(future)
        future.add_done_callback(self._tracked_done)

    def _tracked_done(self, future: asyncio.Future[object]) -> None:
        self._tasks.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            _log.error(
                "exit listener of %s failed: %r",
                self.name,
                error,
                exc_info=error,
            )

    async def _retire(self, run: _Run) -> int | None:
        """End *run* and its group; the exit code if it was still running."""
        was_running = run.returncode is None
        code = await self._halt(run)
        if self._run is run:
            self._run = None
        if was_running:
            self._last_exit_code = code
            self._last_exit_at = self._clock.time()
            _log.info("stopped %s (exit code %s)", self.name, code)
        self._remove_pidfile()
        if not run.closed.done():
            # Output may still be in the pipe: it drains in the background.
            self._draining.add(run)
            run.closed.add_done_callback(lambda _: self._draining.discard(run))
        return code if was_running else None

    async def _halt(self, run: _Run) -> int | None:
        run.stopping = True
        if run.returncode is None:
            self._state = ProcessState.STOPPING
        elif not (run.leftovers and _group_exists(run.pid)):
            return run.returncode
        _signal_group(run.pid, self.stop_signal)
        try:
            async with asyncio.timeout(self.stop_timeout):
                await asyncio.shield(run.exited)
                # Members that outlive the leader share its deadline.
                delay = GROUP_POLL
                while _group_exists(run.pid):
                    await self._clock.sleep(delay)
                    delay = min(delay * 2, MAX_GROUP_POLL)
        except TimeoutError:
            _log.warning(
                "%s did not stop within %ss of %s; killing its group",
                self.name,
                self.stop_timeout,
                self.stop_signal.name,
            )
            _signal_group(run.pid, signal.SIGKILL)
            if run.returncode is None:
                await self._await_kill(run)
        except asyncio.CancelledError:
            # A stop cut short must not leave the group running.
            _signal_group(run.pid, signal.SIGKILL)
            raise
        return run.returncode

    async def _await_kill(self, run: _Run) -> None:
        try:
            async with asyncio.timeout(KILL_WAIT):
                await asyncio.shield(run.exited)
        except TimeoutError:
            raise ActionError(
                f"stop {self.name}",
                f"pid {run.pid} is still alive {KILL_WAIT}s after SIGKILL",
            ) from None

    async def _drain(self) -> None:
        pending = {run.closed for run in self._draining}
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_GRACE)
        # A descendant that left the group may hold the pipe for ever.
        for run in tuple(self._draining):
            run.close()
        self._draining.clear()

    def _pidfile(self) -> Path | None:
        if self.state_dir is None:
            return None
        return self.state_dir / "pids" / f"{self.name}.json"

    def _write_pidfile(self, run: _Run) -> None:
        path = self._pidfile()
        if path is None:
            return
        try:
            created = float(psutil.Process(run.pid).create_time())
        except psutil.Error:
            return
        record = {
            "name": self.name,
            "pid": run.pid,
            "pgid": run.pid,
            "createTime": created,
            "command": list(self.command),
            "startedAt": run.started_at,
        }
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(record), encoding="utf-8")
            temporary.replace(path)
        except OSError as error:
            _log.warning("cannot record pid of %s: %s", self.name, error)

    def _remove_pidfile(self) -> None:
        path = self._pidfile()
        if path is None:
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            _log.warning("cannot remove %s: %s", path, error)

    def __repr__(self) -> str:
        return (
            f"ManagedProcess({self.name!r}, state={self._state!s}, "
            f"pid={self.pid})"
        )


class ProcessSupervisor:
    """The set of managed processes, by name.

    *on_exit* is added to every process: it hears each unrequested exit.
    ``async with supervisor:`` starts the autostart processes and stops
    every process on the way out.
    """

    def __init__(
        self,
        *,
        clock: Clock = system_clock,
        on_exit: ExitListener | None = None,
    ) -> None:
        self._clock = clock
        self._on_exit = on_exit
        self._processes: dict[str, ManagedProcess] = {}

    def add(self, process: ManagedProcess) -> None:
        """Supervise *process*; its name must not be taken."""
        if process.name in self._processes:
            raise ConfigError(
                f"a process named {process.name!r} is already supervised",
                where="process",
            )
        if self._on_exit is not None:
            process.add_exit_listener(self._on_exit)
        self._processes[process.name] = process

    def get(self, name: str) -> ManagedProcess:
        """The process called *name*, or UnknownNameError."""
        process = self._processes.get(name)
        if process is None:
            raise UnknownNameError("process", name, list(self._processes))
        return process

    async def start_all(self) -> None:
        """Start the autostart processes concurrently.

        One that cannot start is logged and left EXITED, so the others
        still run and the healing engine can deal with it.
        """
        chosen = [p for p in self._processes.values() if p.autostart]
        await _each(chosen, "start", [p.start() for p in chosen])

    async def stop_all(self) -> None:
        """Stop every process concurrently, each graceful then killed."""
        chosen = list(self._processes.values())
        await _each(chosen, "stop", [p.stop() for p in chosen])

    async def reap_orphans(
        self, state_dir: Path | str, *, grace: float | timedelta = ORPHAN_GRACE
    ) -> list[int]:
        """Kill the groups a killed daemon left; see :func:`reap_orphans`."""
        return await reap_orphans(state_dir, grace=grace, clock=self._clock)

    def snapshot(self) -> list[ProcessSnapshot]:
        """Every process's snapshot, in the order they were added."""
        return [process.snapshot() for process in self._processes.values()]

    def __iter__(self) -> Iterator[ManagedProcess]:
        return iter(tuple(self._processes.values()))

    def __len__(self) -> int:
        return len(self._processes)

    def __contains__(self, name: object) -> bool:
        return name in self._processes

    async def __aenter__(self) -> Self:
        await self.start_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop_all()


async def reap_orphans(
    state_dir: Path | str,
    *,
    grace: float | timedelta = ORPHAN_GRACE,
    clock: Clock = system_clock,
) -> list[int]:
    """Kill process groups recorded in *state_dir* by an earlier daemon.

    A recorded group is killed (SIGTERM, then SIGKILL after *grace*) only
    if its leader is alive and has the recorded create_time: a pid reused
    by an unrelated process is left alone. Every record is removed.
    Returns the pids of the leaders that were signalled. Call it before
    starting any process with the same *state_dir*.
    """
    grace = seconds(grace, name="grace")
    if grace < 0:
        raise ConfigError(f"must not be negative, got {grace}", where="grace")
    records = sorted((Path(state_dir) / "pids").glob("*.json"))
    leaders = [leader for path in records if (leader := _orphan(path))]
    for leader in leaders:
        _signal_group(leader.pid, signal.SIGTERM)
    survivors = await _wait_gone(leaders, grace, clock)
    for leader in leaders:
        # Members outliving their leader keep the pgid theirs: safe.
        if _group_exists(leader.pid):
            _signal_group(leader.pid, signal.SIGKILL)
    await _wait_gone(survivors, KILL_WAIT, clock)
    for path in records:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    killed = [leader.pid for leader in leaders]
    if killed:
        _log.warning(
            "killed %d orphaned process group(s) left by an earlier daemon",
            len(killed),
            extra={"facts": {"pids": killed}},
        )
    return killed


def _orphan(path: Path) -> psutil.Process | None:
    """The live leader recorded in *path*, if it is really that process."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        pid = int(record["pid"])
        pgid = int(record["pgid"])
        created = float(record["createTime"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        _log.warning("ignoring unreadable pid record %s: %s", path, error)
        return None
    if pid <= 1 or pgid != pid or pid == os.getpid():
        _log.warning("ignoring pid record %s for pid %d", path, pid)
        return None
    try:
        leader = psutil.Process(pid)
        same = abs(leader.create_time() - created) <= _CREATE_TIME_TOLERANCE
        if not same:
            _log.info(
                "pid %d from %s now belongs to another process", pid, path
            )
            return None
        if not _alive(leader) or os.getpgid(pid) != pgid:
            return None
    except (psutil.Error, ProcessLookupError):
        return None
    return cast("psutil.Process", leader)


async def _wait_gone(
    processes: list[psutil.Process], within: float, clock: Clock
) -> list[psutil.Process]:
    """Wait until *processes* (not our children) are gone; the survivors."""
    alive = [process for process in processes if _alive(process)]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while alive:
                await clock.sleep(GROUP_POLL)
                alive = [process for process in alive if _alive(process)]
    return alive


def _alive(process: psutil.Process) -> bool:
    try:
        return bool(
            process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def _group_exists(pgid: int) -> bool:
    """Whether a live (not zombie) process is in group *pgid*."""
    # killpg(0) would test our own group; pgid 1 is init's.
    if pgid <= 1:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies answer killpg too, and an init that reaps slowly would keep
    # them (and a stop) around for seconds: look at the members' states.
    return _live_member(pgid)


def _live_member(pgid: int) -> bool:
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_bytes()
            except OSError:
                continue
            # After "pid (comm)" come state, ppid and pgrp.
            state, _, pgrp, *_ = stat.rpartition(b")")[2].split()
            if int(pgrp) == pgid and state not in {b"Z", b"X"}:
                return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    if pgid <= 1 or pgid == os.getpgrp():
        _log.error("refusing to send %s to process group %d", sig.name, pgid)
        return
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return
    except PermissionError as error:
        _log.warning("cannot send %s to group %d: %s", sig.name, pgid, error)


async def _each(
    processes: list[ManagedProcess],
    verb: str,
    calls: list[Awaitable[int | None]],
) -> None:
    results = await asyncio.gather(*calls, return_exceptions=True)
    failure: BaseException | None = None
    for process, result in zip(processes, results, strict=True):
        if isinstance(result, ActionError):
            _log.error("could not %s %s: %s", verb, process.name, result)
        elif isinstance(result, BaseException) and failure is None:
            failure = result
    if failure is not None:
        raise failure


def _resolve(future: asyncio.Future[_T], value: _T) -> None:
    if not future.done():
        future.set_result(value)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r} is not a usable process name (letters, digits, "
            "'.', '_' and '-', starting with a letter or digit)",
            where="name",
        )
    return name


def _check_command(command: object) -> tuple[str, ...]:
    if isinstance(command, str | bytes):
        raise ConfigError(
            f"expected an argv list such as ['python3', '-m', 'app'], "
            f"got the string {command!r} (no shell is ever used)",
            where="command",
        )
    if not isinstance(command, Sequence) or not command:
        raise ConfigError(
            f"expected a non-empty argv list, got {command!r}",
            where="command",
        )
    argv = tuple(command)
    if not all(isinstance(part, str) for part in argv):
        raise ConfigError(
            f"every argument must be a string, got {command!r}",
            where="command",
        )
    return cast("tuple[str, ...]", argv)


def _check_env(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return {}
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigError(
                f"names and values must be strings, got {key!r}={value!r}",
                where="env",
            )
    return dict(env)


def _check_signal(value: int) -> signal.Signals:
    try:
        return signal.Signals(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{value!r} is not a signal", where="stop_signal"
        ) from None
