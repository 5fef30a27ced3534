"""Helpers shared by the process-starting benchmarks (not a benchmark).

Everything here talks to 127.0.0.1 only. :class:`Janitor` owns every
process a benchmark starts: each one leads its own session, every pid a
benchmark sees is noted with its create time, and :meth:`Janitor.close`
ends them all (SIGTERM, then SIGKILL to each process group), even after
Ctrl+C or an error, without touching a process that merely reused a pid.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import time

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Self

import psutil  # type: ignore[import-untyped]


__all__ = [
    "TINY_SERVER",
    "Janitor",
    "children_of",
    "free_port",
    "http_get",
    "load_average",
    "percentile",
    "raise_on_sigterm",
    "wait_http",
]


#: A tiny HTTP server program (``python SCRIPT PORT``): one thread, a new
#: connection per request, ``200 ok <pid>`` to anything, SO_REUSEADDR so a
#: restarted copy can bind at once.
TINY_SERVER = """\
import os, socket, sys

sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(128)
body = b"ok %d\\n" % os.getpid()
reply = (
    b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\n"
    b"Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % len(body)
    + body
)
while True:
    conn, _ = sock.accept()
    try:
        conn.settimeout(2)
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.sendall(reply)
    except OSError:
        pass
    finally:
        conn.close()
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def load_average() -> str:
    """The machine's 1/5/15-minute load averages (it is shared)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100), nearest rank; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


def http_get(
    port: int, path: str = "/", *, timeout: float = 1.0
) -> tuple[int, bytes]:
    """One HTTP/1.0 GET on a fresh connection: (status, body).

    Raises OSError (refused, reset, timed out) like the socket does.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(
            f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode("ascii")
        )
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise ConnectionResetError(
            f"not an HTTP response: {head[:80]!r}"
        ) from None
    return status, body


def wait_http(
    port: int,
    path: str = "/",
    *,
    timeout: float = 20.0,
    process: subprocess.Popen[bytes] | None = None,
) -> bytes:
    """Poll until GET *path* answers 200; the body. TimeoutError if not.

    When *process* exits first, RuntimeError says so at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{process.args!r} exited with {process.returncode} before "
                f"serving on port {port}"
            )
        try:
            status, body = http_get(port, path)
        except OSError as error:
            last = error
        else:
            if status == 200:
                return body
            last = f"HTTP {status}"
        time.sleep(0.02)
    raise TimeoutError(
        f"port {port}{path} not serving after {timeout}s: {last}"
    )


def children_of(ppid: int) -> list[int]:
    """Live (not zombie) children of *ppid*, by one scan of /proc.

    This kernel has no /proc/<pid>/task/<tid>/children, so the scan reads
    every /proc/<pid>/stat (about 0.6 ms with ~80 processes).
    """
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            name = entry.name
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:  # noqa: PTH123 (hot loop)
                    fields = stat.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == ppid and fields[0] not in {b"Z", b"X"}:
                found.append(int(name))
    return found


def cmdline(pid: int) -> bytes:
    """The raw NUL-separated command line, b"" if gone (or not exec'd)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:  # noqa: PTH123 (hot loop)
            return file.read()
    except OSError:
        return b""


def raise_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, so finally blocks clean up."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class Janitor:
    """Starts processes, remembers every pid seen, and ends them all."""

    def __init__(self) -> None:
        self._roots: list[subprocess.Popen[bytes]] = []
        self._seen: dict[int, float] = {}  # pid -> create_time
        self._logs: list[IO[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | str | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start *argv* in a new session; output to *log* (or discarded)."""
        out: IO[bytes] | int
        if stdout is not None:
            out = stdout
        elif log is not None:
            handle = log.open("ab")
            self._logs.append(handle)
            out = handle
        else:
            out = subprocess.DEVNULL
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if stdout is None else None,
            start_new_session=True,
        )
        self._roots.append(proc)
        self.note(proc.pid)
        return proc

    def note(self, pid: int) -> None:
        """Remember *pid* (with its create time) so close() can end it."""
        if pid in self._seen:
            return
        with contextlib.suppress(psutil.Error):
            self._seen[pid] = psutil.Process(pid).create_time()

    def note_descendants(self, pid: int) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children(recursive=True):
                self.note(child.pid)

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
        """SIGTERM *proc*, wait up to *grace*, then kill what is left."""
        self.note_descendants(proc.pid)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.kill()
                proc.wait(5)
        self._sweep()
        return proc.returncode

    def close(self) -> None:
        """End every root (gracefully first) and every pid ever noted."""
        for proc in self._roots:
            self.note_descendants(proc.pid)
        for proc in self._roots:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self._roots:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(deadline - time.monotonic(), 0.01))
        for proc in self._roots:
            _kill_group(proc.pid)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        self._sweep()
        for handle in self._logs:
            handle.close()
        self._logs.clear()

    def _sweep(self) -> None:
        """SIGKILL each noted pid (and its group) that is still the same."""
        for pid in list(self._survivors()):
            _kill_group(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self._survivors() and time.monotonic() < deadline:
            time.sleep(0.01)

    def _survivors(self) -> Iterator[int]:
        for pid, created in list(self._seen.items()):
            try:
                process = psutil.Process(pid)
                same = abs(process.create_time() - created) < 0.01
                alive = process.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                same = alive = False
            if same and alive:
                yield pid
            else:
                self._seen.pop(pid, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _kill_group(pgid: int) -> None:
    """SIGKILL group *pgid*, never our own (nor init's)."""
    if pgid <= 1 or pgid == os.getpgrp():
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
