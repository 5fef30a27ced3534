"""ProcessLog: a managed process's output, on disk and in memory.

Operators read ``logs/<name>.log``; the healing engine and the LLM advisor
read the last lines as evidence. One ProcessLog per managed process keeps
both: a size-rotated file (``<name>.log``, ``.log.1`` ... ``.log.N``, as
``logging.handlers.RotatingFileHandler`` names them) and a ring of the last
lines. Each run of the process feeds its own :class:`LogStream`, so a line
half-written by a dead run is never glued to the next run's first line.

A line longer than :data:`MAX_LINE_BYTES` is cut (the rest is dropped up to
the next newline), so a child that never writes a newline cannot make the
supervisor buffer without bound. A file that cannot be written is reported
once and skipped: losing the log must never stop the process or the ring.
"""

from __future__ import annotations

import contextlib
import logging

from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from selfhealing.exceptions import ConfigError


__all__ = [
    "CUT_MARKER",
    "MAX_LINE_BYTES",
    "LogStream",
    "ProcessLog",
]

_log = logging.getLogger("selfhealing.supervisor")

#: Longest line kept, in bytes; longer lines are cut to this length.
MAX_LINE_BYTES = 64 * 1024
#: Appended to a cut line so nobody mistakes it for the whole line.
CUT_MARKER = b" [line cut]"
_DEFAULT_MAX_BYTES = 10 * 1024 * 1024


def _count(value: object, *, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"expected an integer, got {value!r}", where=where)
    if value < minimum:
        raise ConfigError(
            f"must be at least {minimum}, got {value}", where=where
        )
    return value


class ProcessLog:
    """A rotating ``<name>.log`` file plus the last *tail_lines* lines.

    *max_bytes* 0 never rotates; *backups* 0 truncates in place when the
    file is full. The file opens with the first :meth:`stream` and closes
    with :meth:`close`; the ring lives as long as the object.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = _DEFAULT_MAX_BYTES,
        backups: int = 3,
        tail_lines: int = 200,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = _count(max_bytes, where="max_bytes", minimum=0)
        self.backups = _count(backups, where="backups", minimum=0)
        tail_lines = _count(tail_lines, where="tail_lines", minimum=0)
        # Raw bytes: decoding costs nothing until someone reads the tail.
        self._ring: deque[bytes] = deque(maxlen=tail_lines)
        self._file: BinaryIO | None = None
        self._size = 0
        self._failed = False

    def stream(self) -> LogStream:
        """A line splitter for one run's output, writing into this log."""
        self._open()
        return LogStream(self)

    def write(self, lines: Iterable[bytes]) -> None:
        """Append complete lines (without their newline) to file and ring."""
        file = self._file
        for line in lines:
            self._ring.append(line)
            if file is None:
                continue
            size = len(line) + 1
            try:
                if self.max_bytes and self._size + size > self.max_bytes:
                    file = self._rotate(file)
                file.write(line)
                file.write(b"\n")
            except OSError as error:
                self._fail("write", error)
                file = None
                continue
            self._size += size
        if file is not None:
            # One flush per chunk read from the pipe, not one per line.
            try:
                file.flush()
            except OSError as error:
                self._fail("write", error)

    def tail(self, lines: int = 50) -> list[str]:
        """The last *lines* lines kept in memory, oldest first."""
        lines = _count(lines, where="lines", minimum=0)
        ring = self._ring
        start = max(len(ring) - lines, 0)
        return [
            ring[index].decode("utf-8", "replace").removesuffix("\r")
            for index in range(start, len(ring))
        ]

    def close(self) -> None:
        """Close the file; the next :meth:`stream` reopens it."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as error:
                self._fail("close", error)

    def _open(self) -> None:
        if self._file is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            self._size = self._file.tell()
        except OSError as error:
            self._fail("open", error)
            return
        self._failed = False

    def _rotate(self, file: BinaryIO) -> BinaryIO:
        file.close()
        self._file = None
        if self.backups:
            for index in range(self.backups - 1, 0, -1):
                older = self._backup(index)
                if older.exists():
                    older.replace(self._backup(index + 1))
            self.path.replace(self._backup(1))
        # "wb" truncates in place when no backup is kept.
        fresh = self.path.open("wb")
        self._file = fresh
        self._size = 0
        return fresh

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    def _fail(self, verb: str, error: OSError) -> None:
        # A broken disk would otherwise log once per line: say it once,
        # drop the file, and try again at the next start.
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        if not self._failed:
            self._failed = True
            _log.error(
                "cannot %s output log %s: %s; keeping lines in memory only",
                verb,
                self.path,
                error,
            )

    def __repr__(self) -> str:
        return f"ProcessLog({str(self.path)!r})"


class LogStream:
    """Splits one run's raw output into lines for its :class:`ProcessLog`."""

    __slots__ = ("_cutting", "_log", "_partial")

    def __init__(self, log: ProcessLog) -> None:
        self._log = log
        self._partial = bytearray()
        self._cutting = False

    def feed(self, data: bytes) -> None:
        """Take a chunk as read from the pipe; write its complete lines."""
        lines: list[bytes] = []
        start = 0
        end = len(data)
        while start < end:
            newline = data.find(b"\n", start)
            stop = end if newline == -1 else newline
            if self._cutting:
                # The cut line was already written; skip to its end.
                pass
            elif len(self._partial) + stop - start > MAX_LINE_BYTES:
                room = MAX_LINE_BYTES - len(self._partial)
                self._partial += data[start : start + room]
                lines.append(bytes(self._partial) + CUT_MARKER)
                self._partial.clear()
                self._cutting = True
            elif newline != -1 and not self._partial:
                lines.append(data[start:newline])
            else:
                self._partial += data[start:stop]
                if newline != -1:
                    lines.append(bytes(self._partial))
                    self._partial.clear()
            if newline == -1:
                break
            self._cutting = False
            start = newline + 1
        if lines:
            self._log.write(lines)

    def close(self) -> None:
        """End of output: keep a last line that had no newline."""
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._log.write([line])
        self._cutting = False
