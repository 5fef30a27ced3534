"""TcpCheck: can a TCP connection be opened within the deadline?

The cheapest liveness probe for a service without a health endpoint, as
Kubernetes' tcpSocket probe: connect, then close at once without sending.
"""

from __future__ import annotations

import asyncio
import functools

from datetime import timedelta

from selfhealing.checks._probe import check_timeout, describe_error, run_probe
from selfhealing.checks._result import CheckResult
from selfhealing.clock import Clock, system_clock
from selfhealing.exceptions import ConfigError


__all__ = ["TcpCheck"]

_MAX_PORT = 65535


class TcpCheck:
    """Ok when a TCP connection to *host*:*port* opens within *timeout*."""

    kind = "tcp"

    __slots__ = ("_clock", "_describe", "host", "port", "timeout")

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float | timedelta = 1.0,
        clock: Clock = system_clock,
    ) -> None:
        if not isinstance(host, str) or not host.strip():
            raise ConfigError(
                f"must be a non-empty host name or address, got {host!r}",
                where="host",
            )
        if (
            isinstance(port, bool)
            or not isinstance(port, int)
            or not 1 <= port <= _MAX_PORT
        ):
            raise ConfigError(
                f"must be a port number 1-{_MAX_PORT}, got {port!r}",
                where="port",
            )
        self.host = host
        self.port = port
        self.timeout = check_timeout(timeout)
        self._clock = clock
        self._describe = functools.partial(describe_error, host=host)

    async def check(self) -> CheckResult:
        return await run_probe(
            self._probe,
            within=self.timeout,
            clock=self._clock,
            describe=self._describe,
        )

    async def aclose(self) -> None:
        """Nothing to release: each probe closes its own connection."""

    async def _probe(self) -> tuple[bool, str]:
        loop = asyncio.get_running_loop()
        start = self._clock.monotonic()
        transport, _ = await loop.create_connection(
            asyncio.Protocol, self.host, self.port
        )
        elapsed = self._clock.monotonic() - start
        # A bare protocol and no wait for the close: nothing is sent, and
        # the socket is released on the loop's next turn.
        transport.close()
        return True, f"connected in {elapsed * 1000:.1f}ms"

    def __repr__(self) -> str:
        return f"TcpCheck({self.host}:{self.port})"
