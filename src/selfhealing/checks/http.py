"""HttpCheck: one HTTP request judged by status and, optionally, body.

The daemon may probe thousands of endpoints every second, so a probe costs
one request on a kept-alive connection from a pool shared by every check
(HttpSession), reads the body only when a matcher needs it, and logs
nothing per probe. One deadline covers connect, request and body, as a Kubernetes
probe's timeout does; redirects are not followed and a 3xx counts as up.
"""

from __future__ import annotations

import logging

from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import TracebackType
from typing import Self

import aiohttp

from selfhealing._version import __version__
from selfhealing.checks._http_args import (
    compile_regex,
    describe_codes,
    header_text,
    parse_headers,
    parse_method,
    parse_status_codes,
    parse_url,
    redacted,
)
from selfhealing.checks._probe import (
    check_timeout,
    describe_error,
    one_line,
    run_probe,
)
from selfhealing.checks._result import CheckResult
from selfhealing.clock import Clock, system_clock
from selfhealing.exceptions import ConfigError


__all__ = ["MAX_BODY_BYTES", "USER_AGENT", "HttpCheck", "HttpSession"]

_log = logging.getLogger("selfhealing.checks")

USER_AGENT = f"selfhealing-probe/{__version__}"
# A health page is small; a huge one must not stall the loop or eat memory.
MAX_BODY_BYTES = 1024 * 1024

_NEEDLE_SHOWN = 40


class HttpSession:
    """One aiohttp ClientSession and its keep-alive pool, for many checks.

    The ClientSession is created on first use, inside the running loop.
    Closing is final: checks probing through a closed session report
    ``"http session is closed"``. The owner closes it, not the checks.
    """

    __slots__ = (
        "_client",
        "_closed",
        "_dns_cache_ttl",
        "_keepalive_timeout",
        "_user_agent",
    )

    def __init__(
        self,
        *,
        keepalive_timeout: float | timedelta = 30.0,
        dns_cache_ttl: int = 10,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._keepalive_timeout = check_timeout(
            keepalive_timeout, where="keepalive_timeout"
        )
        if isinstance(dns_cache_ttl, bool) or not isinstance(
            dns_cache_ttl, int
        ):
            raise ConfigError(
                f"must be whole seconds, got {dns_cache_ttl!r}",
                where="dns_cache_ttl",
            )
        self._dns_cache_ttl = dns_cache_ttl
        self._user_agent = header_text(user_agent, "user_agent")
        self._client: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def client(self) -> aiohttp.ClientSession:
        """The shared ClientSession; call it inside the running loop."""
        client = self._client
        if client is None:
            if self._closed:
                raise RuntimeError("http session is closed")
            client = self._client = self._open()
            _log.debug("http session opened")
        return client

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0,
            ttl_dns_cache=self._dns_cache_ttl,
            keepalive_timeout=self._keepalive_timeout,
        )
        return aiohttp.ClientSession(
            connector=connector,
            # Each probe runs under its own asyncio.timeout(); aiohttp's
            # timers would only add a second deadline and a timer per call.
            timeout=aiohttp.ClientTimeout(),
            # Probes must not carry one target's cookies to the next.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": self._user_agent},
            # Plain bodies: no compression work on either side of a probe.
            skip_auto_headers=("Accept-Encoding",),
        )

    async def aclose(self) -> None:
        """Close every pooled connection; the session stays closed."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()
            _log.debug("http session closed")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class HttpCheck:
    """Request *url*; ok when the status is expected and the body matches.

    *expected_status* defaults to 200-399. *body_contains* (a substring)
    and *body_regex* (``re.search``) look at the first MiB of the body,
    decoded with the response's charset (UTF-8 if none). Without
    *session* the check opens its own and closes it in :meth:`aclose`.
    """

    kind = "http"

    __slots__ = (
        "_clock",
        "_contains",
        "_describe_status",
        "_expected",
        "_headers",
        "_host",
        "_owns_session",
        "_regex",
        "_session",
        "_ssl",
        "_url",
        "method",
        "timeout",
        "url",
    )

    def __init__(
        self,
        url: str,
        *,
        timeout: float | timedelta = 1.0,
        method: str = "GET",
        expected_status: Iterable[int] | None = None,
        body_contains: str | None = None,
        body_regex: str | None = None,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
        session: HttpSession | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._url = parse_url(url)
        self.url = url
        self._host = self._url.host or ""
        self.timeout = check_timeout(timeout)
        self.method = parse_method(method)
        self._expected = parse_status_codes(expected_status)
        self._describe_status = describe_codes(self._expected)
        if body_contains is not None and (
            not isinstance(body_contains, str) or not body_contains
        ):
            raise ConfigError(
                f"must be a non-empty string, got {body_contains!r}",
                where="body_contains",
            )
        self._contains = body_contains
        self._regex = None if body_regex is None else compile_regex(body_regex)
        if self.method == "HEAD" and self._needs_body:
            raise ConfigError(
                "a HEAD response has no body to match; use GET",
                where="method",
            )
        self._headers = parse_headers(headers)
        self._ssl = bool(verify_tls)
        self._owns_session = session is None
        self._session = HttpSession() if session is None else session
        self._clock = clock

    @property
    def session(self) -> HttpSession:
        return self._session

    @property
    def _needs_body(self) -> bool:
        return self._contains is not None or self._regex is not None

    async def check(self) -> CheckResult:
        return await run_probe(
            self._probe,
            within=self.timeout,
            clock=self._clock,
            describe=self._describe,
        )

    async def aclose(self) -> None:
        if self._owns_session:
            await self._session.aclose()

    async def _probe(self) -> tuple[bool, str]:
        if self._session.closed:
            return False, "http session is closed"
        async with self._session.client().request(
            self.method,
            self._url,
            headers=self._headers,
            allow_redirects=False,
            ssl=self._ssl,
        ) as response:
            status = response.status
            if status not in self._expected:
                return (
                    False,
                    f"HTTP {status} (expected {self._describe_status})",
                )
            if self._needs_body:
                problem = self._match(await _read_text(response))
                if problem is not None:
                    return False, problem
            return True, f"HTTP {status}"

    def _match(self, read: tuple[str, bool]) -> str | None:
        text, truncated = read
        where = " in its first MiB" if truncated else ""
        if self._contains is not None and self._contains not in text:
            return f"body lacks {_shown(self._contains)}{where}"
        if self._regex is not None and self._regex.search(text) is None:
            pattern = _shown(self._regex.pattern, quote=False)
            return f"body does not match /{pattern}/{where}"
        return None

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, aiohttp.ClientConnectorError):
            return describe_error(exc.os_error, host=self._host)
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "server disconnected"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return one_line(f"body broken off: {exc}")
        if isinstance(exc, aiohttp.ClientResponseError):
            return one_line(f"bad HTTP response: {exc.message}")
        return describe_error(exc, host=self._host)

    def __repr__(self) -> str:
        return f"HttpCheck({self.method} {redacted(self._url)})"


async def _read_text(response: aiohttp.ClientResponse) -> tuple[str, bool]:
    """The body's first MiB as text, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_BODY_BYTES:
        chunk = await response.content.read(MAX_BODY_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    truncated = size >= MAX_BODY_BYTES and not response.content.at_eof()
    body = b"".join(chunks)
    try:
        text = body.decode(response.charset or "utf-8", errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    return text, truncated


def _shown(text: str, *, quote: bool = True) -> str:
    if len(text) > _NEEDLE_SHOWN:
        text = text[: _NEEDLE_SHOWN - 1] + "…"
    return repr(text) if quote else text
