from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from selfhealing.checks import HttpCheck, HttpSession
from selfhealing.checks.http import MAX_BODY_BYTES, USER_AGENT
from selfhealing.exceptions import ConfigError
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

# Generous bounds for waiting on real I/O; never reached when things work.
WAIT = 5.0
SLACK = 0.5


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]


@dataclass
class HttpServer:
    """A small HTTP/1.1 server on 127.0.0.1 whose answer each test sets.

    It counts TCP connections, records requests, and can hold its answer
    (before the headers or halfway through the body) until ``release``.
    """

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    hold_headers: bool = False
    hold_body: bool = False
    drop_after_answer: bool = False
    connections: int = 0
    open_connections: int = 0
    requests: list[Request] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    port: int = 0
    scheme: str = "http"
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/health"

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "http" if tls is None else "https"
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.release.set()
        for writer in list(self._writers):
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        await self.wait_for(lambda: self.open_connections == 0)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT), self.changed:
            await self.changed.wait_for(predicate)

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self.open_connections += 1
        self._writers.add(writer)
        await self._notify()
        try:
            while request := await self._read_request(reader):
                self.requests.append(request)
                await self._notify()
                await self._answer(request, writer)
                if self.drop_after_answer:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self.open_connections -= 1
            await self._notify()

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while (header := await reader.readline()) not in {b"\r\n", b""}:
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return Request(method, target, headers)

    async def _answer(
        self, request: Request, writer: asyncio.StreamWriter
    ) -> None:
        if self.hold_headers:
            await self.release.wait()
        body = b"" if request.method == "HEAD" else self.body
        lines = [f"HTTP/1.1 {self.status} Whatever"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines.append(f"Content-Length: {len(self.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.hold_body:
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            await self.release.wait()
            writer.write(body[len(body) // 2 :])
        else:
            writer.write(head + body)
        await writer.drain()


@pytest.fixture(name="server")
async def _server() -> AsyncIterator[HttpServer]:
    server = HttpServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(name="tls_server")
async def _tls_server(tmp_path: Path) -> AsyncIterator[HttpServer]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = HttpServer()
    await server.start(tls)
    yield server
    await server.stop()


@pytest.fixture(name="make_check")
async def _make_check() -> AsyncIterator[Callable[..., HttpCheck]]:
    made: list[HttpCheck] = []

    def make(url: str, **kwargs: object) -> HttpCheck:
        check = HttpCheck(url, **kwargs)  # type: ignore[arg-type]
        made.append(check)
        return check

    yield make
    for check in made:
        await check.aclose()


@pytest.fixture(name="closed_port")
def _closed_port() -> Iterator[int]:
    # Bound but never listening: connecting is refused, and no other
    # process can take the port while the test runs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class TestStatus:
    async def test_200_is_ok(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A 200 answer is a healthy result that names the status."""
        result = await make_check(server.url).check()

        assert (True, "HTTP 200") == (result.ok, result.detail)

    async def test_500_is_not_ok(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A 500 answer fails and says which statuses were expected."""
        server.status = 500

        result = await make_check(server.url).check()

        assert (False, "HTTP 500 (expected 200-399)") == (
            result.ok,
            result.detail,
        )

    async def test_redirect_is_ok_and_not_followed(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A 302 counts as up, like Kubernetes, and is not followed."""
        server.status = 302
        server.headers["Location"] = "/elsewhere"

        result = await make_check(server.url).check()

        assert (True, "HTTP 302") == (result.ok, result.detail)
        assert ["/health"] == [request.target for request in server.requests]

    async def test_expected_status_replaces_the_default(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """With expected_status set, only those codes are healthy."""
        check = make_check(server.url, expected_status=[204, 200, 202, 201])
        server.status = 404

        result = await check.check()

        assert "HTTP 404 (expected 200-202, 204)" == result.detail

    async def test_method_and_headers_are_sent(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """The request uses the method and headers given, and says who asks."""
        check = make_check(
            server.url, method="head", headers={"X-Probe": "yes"}
        )

        result = await check.check()

        request = server.requests[0]
        assert result.ok
        assert "HEAD" == request.method
        assert "yes" == request.headers["x-probe"]
        assert USER_AGENT == request.headers["user-agent"]

    async def test_times_come_from_the_injected_clock(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """Start time and latency are read from the check's clock."""
        clock = FakeClock()

        result = await make_check(server.url, clock=clock).check()

        assert (clock.time(), 0.0) == (result.at, result.latency)


class TestBody:
    async def test_substring_present_is_ok(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A body holding the expected substring is healthy."""
        server.body = b'{"status": "ready"}'

        result = await make_check(server.url, body_contains="ready").check()

        assert (True, "HTTP 200") == (result.ok, result.detail)

    async def test_substring_missing_is_not_ok(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A body without the expected substring fails and says so."""
        server.body = b'{"status": "starting"}'

        result = await make_check(server.url, body_contains="ready").check()

        assert (False, "body lacks 'ready'") == (result.ok, result.detail)

    async def test_regex_match_is_ok(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A body the regex finds a match in is healthy."""
        server.body = b"db: up\ncache: up\n"

        result = await make_check(
            server.url, body_regex=r"(?m)^cache:\s*up$"
        ).check()

        assert result.ok

    async def test_regex_mismatch_is_not_ok(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A body the regex does not match fails and shows the pattern."""
        server.body = b"db: up\ncache: down\n"

        result = await make_check(
            server.url, body_regex=r"cache:\s*up"
        ).check()

        assert (False, r"body does not match /cache:\s*up/") == (
            result.ok,
            result.detail,
        )

    async def test_body_is_decoded_with_its_charset(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """The declared charset decodes the body before matching."""
        server.headers["Content-Type"] = "text/plain; charset=latin-1"
        server.body = "état: prêt".encode("latin-1")

        result = await make_check(server.url, body_contains="prêt").check()

        assert result.ok

    async def test_only_the_first_mib_is_read(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A match beyond the first MiB is not seen, and the detail says so."""
        server.body = b"x" * MAX_BODY_BYTES + b"ready"

        result = await make_check(server.url, body_contains="ready").check()

        assert "body lacks 'ready' in its first MiB" == result.detail

    async def test_status_is_judged_before_the_body(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """An unexpected status fails even when the body would match."""
        server.status = 503
        server.body = b"ready"

        result = await make_check(server.url, body_contains="ready").check()

        assert "HTTP 503 (expected 200-399)" == result.detail


class TestDeadline:
    async def test_slow_headers_time_out(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """Headers later than the deadline fail the probe on time."""
        server.hold_headers = True
        check = make_check(server.url, timeout=0.2)

        started = time.monotonic()
        result = await check.check()
        elapsed = time.monotonic() - started

        assert (False, "timed out after 0.200s") == (result.ok, result.detail)
        assert 0.2 <= result.latency < 0.2 + SLACK
        assert elapsed < 0.2 + SLACK

    async def test_slow_body_times_out_when_matched(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """The deadline covers the body when a matcher needs to read it."""
        server.hold_body = True
        server.body = b"still loading... ready"
        check = make_check(server.url, timeout=0.2, body_contains="ready")

        started = time.monotonic()
        result = await check.check()

        assert "timed out after 0.200s" == result.detail
        assert time.monotonic() - started < 0.2 + SLACK

    async def test_slow_body_is_not_read_without_a_matcher(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """Without a body matcher the status alone decides, at once."""
        server.hold_body = True
        server.body = b"a body that never finishes"

        result = await make_check(server.url, timeout=0.2).check()

        assert (True, "HTTP 200") == (result.ok, result.detail)

    async def test_cancellation_propagates(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """Cancelling a probe raises CancelledError instead of a result."""
        server.hold_headers = True
        probe = asyncio.create_task(make_check(server.url, timeout=30).check())
        await server.wait_for(lambda: len(server.requests) == 1)

        probe.cancel()

        with pytest.raises(asyncio.CancelledError):
            await probe


class TestConnectionErrors:
    async def test_refused(
        self, closed_port: int, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A port nobody listens on reads as a refused connection."""
        check = make_check(f"http://127.0.0.1:{closed_port}/")

        result = await check.check()

        assert (False, "connection refused") == (result.ok, result.detail)

    async def test_unresolvable_host(
        self, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A host name that cannot resolve says which host it was."""
        # Over 255 characters: the resolver refuses it without a query.
        host = ".".join(["a" * 60] * 5) + ".invalid"

        result = await make_check(f"http://{host}/").check()

        assert not result.ok
        assert result.detail.startswith("cannot resolve aaaa")


class TestTls:
    async def test_an_untrusted_certificate_fails(
        self, tls_server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A certificate nobody vouches for fails the probe and says why."""
        result = await make_check(tls_server.url).check()

        assert not result.ok
        assert result.detail.startswith("TLS certificate rejected: ")

    async def test_verification_can_be_turned_off(
        self, tls_server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """With verify_tls=False a self-signed endpoint is probed as usual."""
        result = await make_check(tls_server.url, verify_tls=False).check()

        assert (True, "HTTP 200") == (result.ok, result.detail)


class TestSessions:
    async def test_keep_alive_reuses_one_connection(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """Twenty probes travel over a single kept-alive TCP connection."""
        check = make_check(server.url)

        results = [await check.check() for _ in range(20)]

        assert [True] * 20 == [result.ok for result in results]
        assert (1, 20) == (server.connections, len(server.requests))

    async def test_a_dropped_connection_is_replaced_not_reported(
        self, server: HttpServer, make_check: Callable[..., HttpCheck]
    ) -> None:
        """A pooled connection the server closed is not a failed probe."""
        # As after a restart of the service: kept-alive sockets go stale.
        server.drop_after_answer = True
        check = make_check(server.url)

        results = [await check.check() for _ in range(3)]

        assert [True] * 3 == [result.ok for result in results]
        assert 3 == server.connections

    async def test_a_shared_session_pools_connections_across_checks(
        self, server: HttpServer
    ) -> None:
        """Checks on one HttpSession share its connections."""
        async with HttpSession() as session:
            first = HttpCheck(server.url, session=session)
            second = HttpCheck(server.url, session=session)

            for _ in range(3):
                assert (await first.check()).ok
                assert (await second.check()).ok

        assert (1, 6) == (server.connections, len(server.requests))

    async def test_aclose_leaves_a_shared_session_open(
        self, server: HttpServer
    ) -> None:
        """Closing a check does not close a session it was only lent."""
        async with HttpSession() as session:
            first = HttpCheck(server.url, session=session)
            second = HttpCheck(server.url, session=session)
            await first.check()

            await first.aclose()

            assert (await second.check()).ok
            assert not session.closed

    async def test_closing_a_shared_session_fails_later_probes(
        self, server: HttpServer
    ) -> None:
        """Probes through a closed session fail with a clear detail."""
        session = HttpSession()
        check = HttpCheck(server.url, session=session)
        await check.check()

        await session.aclose()
        result = await check.check()

        assert (False, "http session is closed") == (result.ok, result.detail)
        await server.wait_for(lambda: server.open_connections == 0)

    async def test_aclose_closes_an_owned_session(
        self, server: HttpServer
    ) -> None:
        """A check that made its own session closes it and its connection."""
        check = HttpCheck(server.url)
        await check.check()
        assert 1 == server.open_connections

        await check.aclose()

        assert check.session.closed
        await server.wait_for(lambda: server.open_connections == 0)


class TestValidation:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            ("ftp://example.com/", "ftp://example.com/"),
            ("example.com/health", "example.com/health"),
            ("http:///health", "http:///health"),
            ("http://example.com:99999/", "http://example.com:99999/"),
            ("http://user:secret@", "http://user:***@"),
        ],
        ids=["scheme", "no-scheme", "no-host", "bad-port", "password"],
    )
    def test_bad_url_is_refused(self, url: str, shown: str) -> None:
        """A URL without http(s) and a host is refused, naming the URL."""
        with pytest.raises(ConfigError) as caught:
            HttpCheck(url)

        assert "url" == caught.value.where
        assert shown in str(caught.value)
        assert "secret" not in str(caught.value)

    def test_bad_regex_is_refused(self) -> None:
        """A regex that does not compile is refused with the regex error."""
        with pytest.raises(ConfigError) as caught:
            HttpCheck("http://127.0.0.1/", body_regex="ready(")

        assert "body_regex" == caught.value.where
        assert "'ready('" in str(caught.value)
        assert "missing )" in str(caught.value)

    @pytest.mark.parametrize(
        "codes",
        [[99], [600], [200, "204"], [True], [], 200],
        ids=["99", "600", "string", "bool", "empty", "not-a-list"],
    )
    def test_bad_status_codes_are_refused(self, codes: object) -> None:
        """Status codes outside 100-599, or not a list of ints, are refused."""
        with pytest.raises(ConfigError) as caught:
            HttpCheck("http://127.0.0.1/", expected_status=codes)  # type: ignore[arg-type]

        assert "expected_status" == caught.value.where

    @pytest.mark.parametrize(
        ("kwargs", "where"),
        [
            ({"timeout": 0}, "timeout"),
            ({"timeout": float("nan")}, "timeout"),
            ({"method": "GET /"}, "method"),
            ({"method": "HEAD", "body_contains": "ok"}, "method"),
            ({"body_contains": ""}, "body_contains"),
            ({"headers": {"X-A": "1\r\nX-B: 2"}}, "headers"),
            ({"headers": {"Bad Name": "1"}}, "headers"),
        ],
        ids=[
            "zero-timeout",
            "nan-timeout",
            "bad-method",
            "head-with-body",
            "empty-needle",
            "header-injection",
            "header-name",
        ],
    )
    def test_bad_arguments_are_refused(
        self, kwargs: dict[str, object], where: str
    ) -> None:
        """Unusable arguments raise ConfigError naming the parameter."""
        with pytest.raises(ConfigError) as caught:
            HttpCheck("http://127.0.0.1/", **kwargs)  # type: ignore[arg-type]

        assert where == caught.value.where
