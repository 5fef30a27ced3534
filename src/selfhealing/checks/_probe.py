"""The probe runner shared by every built-in check.

It owns the three things each check must get right the same way: one
overall deadline, latency and start time from the injected clock, and
turning any exception (except cancellation) into a short, human detail.
"""

from __future__ import annotations

import asyncio
import errno
import math
import socket
import ssl

from collections.abc import Awaitable, Callable
from datetime import timedelta

from selfhealing.checks._result import CheckResult
from selfhealing.clock import Clock, seconds
from selfhealing.exceptions import ConfigError


__all__ = [
    "MAX_DETAIL_LENGTH",
    "ProbeBusyError",
    "check_timeout",
    "describe_error",
    "exception_line",
    "one_line",
    "run_probe",
]

# A detail is read in a status table and a log line, not a stack trace.
MAX_DETAIL_LENGTH = 300

_ERRNO_DETAILS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
}

# Raised by hand, without an errno, by asyncio and libraries.
_CONNECTION_DETAILS: dict[type[BaseException], str] = {
    ConnectionRefusedError: "connection refused",
    ConnectionResetError: "connection reset",
    ConnectionAbortedError: "connection aborted",
}
_CONNECTION_ERRORS = tuple(_CONNECTION_DETAILS)

Probe = Callable[[], Awaitable[tuple[bool, str]]]
Describe = Callable[[BaseException], str]


class ProbeBusyError(Exception):
    """The previous probe's worker thread has not returned yet."""

    def __init__(self, running_for: float) -> None:
        self.running_for = running_for
        super().__init__(
            f"previous probe still running after {running_for:.3f}s"
        )


def check_timeout(
    value: float | timedelta, *, where: str = "timeout"
) -> float:
    """Validate a probe deadline: a positive, finite number of seconds."""
    timeout = seconds(value, name=where)
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ConfigError(
            f"must be a positive number of seconds, got {value!r}",
            where=where,
        )
    return timeout


def one_line(text: str, limit: int = MAX_DETAIL_LENGTH) -> str:
    """Collapse whitespace to single spaces and cap the length."""
    line = " ".join(text.split())
    if len(line) > limit:
        return line[: limit - 1] + "…"
    return line


def exception_line(exc: BaseException) -> str:
    """``"ExcType: message"``, on one line."""
    message = one_line(str(exc))
    name = type(exc).__name__
    return f"{name}: {message}" if message else name


def describe_error(exc: BaseException, *, host: str | None = None) -> str:
    """A short detail for a failed probe, in an operator's words."""
    if isinstance(exc, ProbeBusyError):
        detail = str(exc)
    elif isinstance(exc, socket.gaierror):
        detail = f"cannot resolve {host or 'host'}"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        detail = f"TLS certificate rejected: {exc.verify_message}"
    elif isinstance(exc, ssl.SSLError):
        detail = f"TLS error: {exc.reason or exc}"
    elif isinstance(exc, OSError) and exc.errno in _ERRNO_DETAILS:
        detail = _ERRNO_DETAILS[exc.errno]
    elif isinstance(exc, _CONNECTION_ERRORS):
        detail = next(
            text
            for kind, text in _CONNECTION_DETAILS.items()
            if isinstance(exc, kind)
        )
    elif isinstance(exc, TimeoutError):
        detail = "timed out"
    elif isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename is not None else ""
        detail = f"{exc.strerror}{where}"
    else:
        return exception_line(exc)
    return one_line(detail)


async def run_probe(
    probe: Probe,
    *,
    within: float,
    clock: Clock,
    describe: Describe = describe_error,
) -> CheckResult:
    """Run *probe* under one deadline of *within* seconds; its verdict.

    *probe* returns ``(ok, detail)``. Exceptions become ``ok=False``
    results through *describe*; ``asyncio.CancelledError`` propagates.
    """
    at = clock.time()
    start = clock.monotonic()
    deadline = asyncio.timeout(within)
    try:
        async with deadline:
            ok, detail = await probe()
    except TimeoutError as exc:
        ok = False
        # An ETIMEDOUT from the kernel is not our deadline expiring.
        if deadline.expired():
            detail = f"timed out after {within:.3f}s"
        else:
            detail = describe(exc)
    except Exception as exc:
        ok = False
        detail = describe(exc)
    return CheckResult(ok, clock.monotonic() - start, detail, at)
