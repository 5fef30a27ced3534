"""HttpAction: call a URL (a webhook, an admin endpoint) and expect a status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from selfhealing.actions._base import ActionResult
from selfhealing.checks._http_args import (
    describe_codes,
    parse_headers,
    parse_method,
    parse_status_codes,
    parse_url,
    redacted,
)
from selfhealing.checks._probe import check_timeout, run_probe
from selfhealing.checks.http import HttpSession
from selfhealing.clock import Clock, system_clock


__all__ = ["HttpAction"]

_SUCCESS = range(200, 300)


class HttpAction:
    kind = "http"

    __slots__ = (
        "_clock",
        "_expected",
        "_headers",
        "_owns_session",
        "_session",
        "_url",
        "body",
        "method",
        "name",
        "timeout",
    )

    def __init__(
        self,
        name: str,
        url: str,
        *,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
        expected_status: Iterable[int] | None = None,
        timeout: float | timedelta = 10.0,
        session: HttpSession | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.name = name
        self._url = parse_url(url)
        self.method = parse_method(method)
        self._headers = parse_headers(headers)
        self.body = body
        self._expected = (
            _SUCCESS
            if expected_status is None
            else parse_status_codes(expected_status)
        )
        self.timeout = check_timeout(timeout)
        self._owns_session = session is None
        self._session = session if session is not None else HttpSession()
        self._clock = clock

    async def run(self) -> ActionResult:
        return ActionResult.of(
            self.name,
            await run_probe(
                self._call, within=self.timeout, clock=self._clock
            ),
        )

    async def _call(self) -> tuple[bool, str]:
        async with self._session.client().request(
            self.method,
            self._url,
            headers=self._headers,
            data=None if self.body is None else self.body.encode(),
            allow_redirects=False,
        ) as response:
            status = response.status
        if status in self._expected:
            return True, f"HTTP {status}"
        return (
            False,
            f"HTTP {status} (expected {describe_codes(self._expected)})",
        )

    async def aclose(self) -> None:
        if self._owns_session:
            await self._session.aclose()

    def __repr__(self) -> str:
        return (
            f"HttpAction({self.name!r}, {self.method} {redacted(self._url)})"
        )
