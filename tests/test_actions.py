from __future__ import annotations

import asyncio
import socket
import sys
import threading

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from aiohttp import web

from selfhealing.actions import (
    ActionResult,
    CallableAction,
    CommandAction,
    HttpAction,
    RemediationAction,
    RestartProcessAction,
)
from selfhealing.checks import HttpSession
from selfhealing.exceptions import ConfigError
from selfhealing.supervisor import ManagedProcess
from selfhealing.testing import FakeClock


pytestmark = pytest.mark.anyio

# Generous bounds for waiting on real processes; never reached when things
# work.
WAIT = 5.0
# 2026-01-01T00:00:00Z, FakeClock's wall origin.
ORIGIN = "2026-01-01T00:00:00.000Z"


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll *predicate* until true; the kernel offers nothing to await."""
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


def gone(pid: int) -> bool:
    """Whether *pid* has ended (a zombie awaiting its reaper counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------- ActionResult


class TestActionResult:
    def test_to_dict(self) -> None:
        """to_dict gives the camelCase shape with ms and ISO time."""
        result = ActionResult("restart-web", True, "done", 0.0125, 1.5)

        assert {
            "action": "restart-web",
            "ok": True,
            "detail": "done",
            "durationMs": 12.5,
            "at": "1970-01-01T00:00:01.500Z",
        } == result.to_dict()

    def test_frozen(self) -> None:
        """A result cannot be changed after the fact."""
        result = ActionResult("a", True, "done", 0.0, 0.0)

        with pytest.raises(AttributeError):
            result.ok = False  # type: ignore[misc]

    @pytest.mark.parametrize(
        "action",
        [
            pytest.param(CallableAction("c", lambda: None), id="callable"),
            pytest.param(CommandAction("c", ["true"]), id="command"),
            pytest.param(HttpAction("h", "http://127.0.0.1/"), id="http"),
        ],
    )
    def test_protocol(self, action: object) -> None:
        """Every built-in action is a RemediationAction."""
        assert isinstance(action, RemediationAction)


# ------------------------------------------------------------ CommandAction


class TestCommandAction:
    async def test_ok(self, clock: FakeClock) -> None:
        """A command that exits 0 succeeds, timed on the injected clock."""
        action = CommandAction("fix", ["true"], clock=clock)

        result = await action.run()

        assert ("fix", True, "exit code 0", 0.0, ORIGIN) == (
            result.action,
            result.ok,
            result.detail,
            result.duration,
            result.to_dict()["at"],
        )

    async def test_wrong_exit_code(self) -> None:
        """Another exit code fails, with the tail of the output."""
        action = CommandAction(
            "fix", ["sh", "-c", "echo first; echo broke >&2; exit 3"]
        )

        result = await action.run()

        assert (False, "exit code 3 (expected 0): first broke") == (
            result.ok,
            result.detail,
        )

    async def test_output_tail_is_bounded(self) -> None:
        """Long output keeps only its last part in the detail."""
        action = CommandAction(
            "fix",
            [sys.executable, "-c", "print('x' * 5000 + 'END'); exit(1)"],
        )

        result = await action.run()

        assert not result.ok
        assert result.detail.endswith("xxEND")
        assert len(result.detail) < 300

    async def test_expected_exit_code(self) -> None:
        """A configured exit code is the one that means success."""
        action = CommandAction(
            "fix", ["sh", "-c", "exit 3"], expected_exit_code=3
        )

        result = await action.run()

        assert (True, "exit code 3") == (result.ok, result.detail)

    async def test_cwd_and_env(self, tmp_path: Path) -> None:
        """The command runs in its cwd with its env merged in."""
        action = CommandAction(
            "fix",
            ["sh", "-c", 'test "$(pwd)" = "$WHERE"'],
            cwd=tmp_path,
            env={"WHERE": str(tmp_path.resolve())},
        )

        assert (await action.run()).ok

    async def test_timeout_kills_process_group(self, tmp_path: Path) -> None:
        """An overrun kills the whole group: a grandchild goes too."""
        pid_file = tmp_path / "grandchild.pid"
        script = (
            f"sleep 60 & echo $! > {pid_file}.tmp; "
            f"mv {pid_file}.tmp {pid_file}; wait"
        )
        action = CommandAction("fix", ["sh", "-c", script], timeout=1.0)

        result = await action.run()

        assert (False, "timed out after 1.000s") == (result.ok, result.detail)
        grandchild = int(pid_file.read_text())
        await wait_until(lambda: gone(grandchild))

    async def test_not_found(self) -> None:
        """A missing program fails with a clear detail, never raises."""
        action = CommandAction("fix", ["/nonexistent/selfheal-fixer"])

        result = await action.run()

        assert (
            False,
            "command not found: /nonexistent/selfheal-fixer",
        ) == (result.ok, result.detail)

    async def test_missing_cwd(self, tmp_path: Path) -> None:
        """A missing working directory is named as such."""
        where = tmp_path / "nope"
        action = CommandAction("fix", ["true"], cwd=where)

        result = await action.run()

        assert (False, f"working directory not found: {where}") == (
            result.ok,
            result.detail,
        )

    def test_shell_string_refused(self) -> None:
        """A command is argv, never one shell string."""
        with pytest.raises(ConfigError, match=r"not one string"):
            CommandAction("fix", "systemctl restart web")  # type: ignore[arg-type]

    def test_attributes(self) -> None:
        """The action exposes its kind, argv, timeout and a readable repr."""
        action = CommandAction("fix", ["true", "x"], timeout=7)

        assert ("command", ("true", "x"), 7.0) == (
            action.kind,
            action.argv,
            action.timeout,
        )
        assert "CommandAction('fix', ['true', 'x'])" == repr(action)


# --------------------------------------------------------------- HttpAction


@dataclass
class Received:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Webhook:
    """A real aiohttp server on 127.0.0.1 whose answer each test sets."""

    status: int = 200
    hold: bool = False
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(
            Received(
                request.method,
                request.path_qs,
                await request.read(),
                dict(request.headers),
            )
        )
        if self.hold:
            await self.release.wait()
        return web.Response(status=self.status, text="answer")


@pytest.fixture(name="webhook")
async def _webhook() -> AsyncIterator[Webhook]:
    hook = Webhook()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hook.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook.port = runner.addresses[0][1]
    yield hook
    hook.release.set()
    await runner.cleanup()


@pytest.fixture(name="session")
async def _session() -> AsyncIterator[HttpSession]:
    session = HttpSession()
    yield session
    await session.aclose()


class TestHttpAction:
    async def test_request_as_configured(
        self, webhook: Webhook, session: HttpSession
    ) -> None:
        """Method, body and headers arrive as configured."""
        action = HttpAction(
            "notify",
            webhook.url("/hook?x=1"),
            method="put",
            headers={"X-Token": "s3cret", "Content-Type": "application/json"},
            body='{"restart": "web"}',
            session=session,
        )

        result = await action.run()

        assert (True, "HTTP 200") == (result.ok, result.detail)
        [request] = webhook.received
        assert ("PUT", "/hook?x=1", b'{"restart": "web"}') == (
            request.method,
            request.path,
            request.body,
        )
        assert "s3cret" == request.headers["X-Token"]
        assert "application/json" == request.headers["Content-Type"]

    async def test_default_is_post_without_body(
        self, webhook: Webhook, session: HttpSession
    ) -> None:
        """By default the action POSTs with an empty body."""
        action = HttpAction("notify", webhook.url(), session=session)

        assert (await action.run()).ok
        [request] = webhook.received
        assert ("POST", b"") == (request.method, request.body)

    @pytest.mark.parametrize("status", [200, 201, 204, 299])
    async def test_2xx_succeeds(
        self, webhook: Webhook, session: HttpSession, status: int
    ) -> None:
        """By default any 2xx status is a success."""
        webhook.status = status
        action = HttpAction("notify", webhook.url(), session=session)

        result = await action.run()

        assert (True, f"HTTP {status}") == (result.ok, result.detail)

    @pytest.mark.parametrize("status", [302, 404, 500, 503])
    async def test_other_status_fails(
        self, webhook: Webhook, session: HttpSession, status: int
    ) -> None:
        """Any other status fails (redirects are not followed)."""
        webhook.status = status
        action = HttpAction("notify", webhook.url(), session=session)

        result = await action.run()

        assert (False, f"HTTP {status} (expected 200-299)") == (
            result.ok,
            result.detail,
        )
        assert 1 == len(webhook.received)

    async def test_expected_status(
        self, webhook: Webhook, session: HttpSession
    ) -> None:
        """Configured status codes replace the 2xx default."""
        webhook.status = 500
        action = HttpAction(
            "notify",
            webhook.url(),
            expected_status=[202, 500],
            session=session,
        )

        assert (await action.run()).ok
        webhook.status = 200
        result = await action.run()
        assert (False, "HTTP 200 (expected 202, 500)") == (
            result.ok,
            result.detail,
        )

    async def test_connection_refused(self, session: HttpSession) -> None:
        """Nobody listening fails with "connection refused"."""
        action = HttpAction(
            "notify", f"http://127.0.0.1:{closed_port()}/", session=session
        )

        result = await action.run()

        assert (False, "connection refused") == (result.ok, result.detail)

    async def test_timeout(
        self, webhook: Webhook, session: HttpSession
    ) -> None:
        """A server slower than the timeout fails the action."""
        webhook.hold = True
        action = HttpAction(
            "notify", webhook.url(), timeout=0.3, session=session
        )

        result = await action.run()

        assert (False, "timed out after 0.300s") == (result.ok, result.detail)

    async def test_own_session_closed_by_aclose(
        self, webhook: Webhook
    ) -> None:
        """Without a session the action owns one, and aclose() closes it."""
        action = HttpAction("notify", webhook.url())
        assert (await action.run()).ok

        await action.aclose()
        result = await action.run()

        assert (False, "RuntimeError: http session is closed") == (
            result.ok,
            result.detail,
        )

    async def test_shared_session_left_open(
        self, webhook: Webhook, session: HttpSession
    ) -> None:
        """aclose() leaves a session the action was given alone."""
        action = HttpAction("notify", webhook.url(), session=session)

        await action.aclose()

        assert not session.closed
        assert (await action.run()).ok

    def test_repr_hides_password(self) -> None:
        """The repr shows method and URL with the password masked."""
        action = HttpAction("notify", "http://ops:hunter2@127.0.0.1/hook")

        assert "hunter2" not in repr(action)
        assert "POST" in repr(action)

    @pytest.mark.parametrize(
        ("kwargs", "where"),
        [
            pytest.param({"url": "ftp://x/"}, "url", id="scheme"),
            pytest.param(
                {"url": "http://x/", "method": "NO SPACE"},
                "method",
                id="method",
            ),
            pytest.param(
                {"url": "http://x/", "expected_status": [700]},
                "expected_status",
                id="status",
            ),
            pytest.param(
                {"url": "http://x/", "headers": {"X": "a\nb"}},
                "headers",
                id="header",
            ),
            pytest.param(
                {"url": "http://x/", "timeout": 0}, "timeout", id="timeout"
            ),
        ],
    )
    def test_invalid_arguments(
        self, kwargs: dict[str, object], where: str
    ) -> None:
        """Bad arguments are ConfigErrors naming the parameter."""
        with pytest.raises(ConfigError) as info:
            HttpAction("notify", **kwargs)  # type: ignore[arg-type]

        assert where == info.value.where


# ---------------------------------------------------- RestartProcessAction


@pytest.fixture(name="sleeper")
async def _sleeper(tmp_path: Path) -> AsyncIterator[ManagedProcess]:
    process = ManagedProcess(
        "sleeper", ["sleep", "60"], log_dir=tmp_path / "logs", stop_timeout=2
    )
    yield process
    await process.stop()


class TestRestartProcessAction:
    async def test_new_pid(self, sleeper: ManagedProcess) -> None:
        """A restart brings up a new child; the detail names both pids."""
        before = await sleeper.start()
        action = RestartProcessAction("restart-sleeper", sleeper)

        result = await action.run()

        after = sleeper.pid
        assert after is not None
        assert before != after
        assert (
            True,
            f"restarted sleeper: pid {before} -> pid {after}",
        ) == (result.ok, result.detail)
        assert (1, True) == (sleeper.restarts, sleeper.running)
        await wait_until(lambda: gone(before))

    async def test_not_running(self, sleeper: ManagedProcess) -> None:
        """Restarting a stopped process starts it, and says it was down."""
        action = RestartProcessAction("restart-sleeper", sleeper)

        result = await action.run()

        assert sleeper.running
        assert (
            True,
            f"restarted sleeper: not running -> pid {sleeper.pid}",
        ) == (
            result.ok,
            result.detail,
        )

    async def test_cannot_start(self, tmp_path: Path) -> None:
        """A program that cannot run fails the action, never raises."""
        process = ManagedProcess(
            "broken", ["/nonexistent/daemon"], log_dir=tmp_path / "logs"
        )
        action = RestartProcessAction("restart-broken", process)
        try:
            result = await action.run()
        finally:
            await process.stop()

        assert not result.ok
        assert "cannot run" in result.detail

    async def test_attributes(self, sleeper: ManagedProcess) -> None:
        """The action exposes its kind, process and timeout."""
        action = RestartProcessAction("r", sleeper, timeout=5)

        assert ("restart_process", sleeper, 5.0) == (
            action.kind,
            action.process,
            action.timeout,
        )
        assert isinstance(action, RemediationAction)
        assert "RestartProcessAction('r', 'sleeper')" == repr(action)


# ---------------------------------------------------------- CallableAction


class TestCallableAction:
    async def test_sync(self) -> None:
        """A sync function runs in a worker thread and succeeds."""
        threads: list[int] = []

        def fix() -> None:
            threads.append(threading.get_ident())

        result = await CallableAction("fix", fix).run()

        assert (True, "done") == (result.ok, result.detail)
        assert [threading.get_ident()] != threads
        assert 1 == len(threads)

    async def test_async(self) -> None:
        """An async function is awaited and succeeds."""
        calls: list[str] = []

        async def fix() -> None:
            calls.append("fixed")

        result = await CallableAction("fix", fix).run()

        assert (True, "done", ["fixed"]) == (result.ok, result.detail, calls)

    async def test_sync_returning_awaitable(self) -> None:
        """A sync callable handing back a coroutine has it awaited."""

        async def fix() -> str:
            return "cache flushed"

        result = await CallableAction("fix", lambda: fix()).run()

        assert (True, "cache flushed") == (result.ok, result.detail)

    @pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
    async def test_raising(self, is_async: bool) -> None:
        """An exception fails the action; its type and message are the
        detail."""

        def sync_fix() -> None:
            raise RuntimeError("cannot reach the pool")

        async def async_fix() -> None:
            raise RuntimeError("cannot reach the pool")

        action = CallableAction("fix", async_fix if is_async else sync_fix)

        result = await action.run()

        assert (False, "RuntimeError: cannot reach the pool") == (
            result.ok,
            result.detail,
        )

    @pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
    async def test_returning_false(self, is_async: bool) -> None:
        """Returning False fails the action."""

        async def async_fix() -> bool:
            return False

        action = CallableAction(
            "fix", async_fix if is_async else lambda: False
        )

        result = await action.run()

        assert (False, "returned False") == (result.ok, result.detail)

    @pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
    async def test_returning_string(self, is_async: bool) -> None:
        """A returned string becomes the detail of a success."""

        async def async_fix() -> str:
            return "flushed 12 entries"

        action = CallableAction(
            "fix", async_fix if is_async else lambda: "flushed 12 entries"
        )

        result = await action.run()

        assert (True, "flushed 12 entries") == (result.ok, result.detail)

    @pytest.mark.parametrize("value", [True, 0, None, []])
    async def test_other_returns_succeed(self, value: object) -> None:
        """Anything but False or a string is a plain success."""
        result = await CallableAction("fix", lambda: value).run()

        assert (True, "done") == (result.ok, result.detail)

    async def test_timeout(self) -> None:
        """An async function past its deadline fails with a timeout."""

        async def fix() -> None:
            await asyncio.Event().wait()

        result = await CallableAction("fix", fix, timeout=0.2).run()

        assert (False, "timed out after 0.200s") == (result.ok, result.detail)

    async def test_clock(self, clock: FakeClock) -> None:
        """Duration and start time come from the injected clock."""

        async def fix() -> None:
            clock.advance(2.5)

        result = await CallableAction("fix", fix, clock=clock).run()

        assert {
            "action": "fix",
            "ok": True,
            "detail": "done",
            "durationMs": 2500.0,
            "at": ORIGIN,
        } == result.to_dict()

    async def test_cancellation_propagates(self) -> None:
        """Cancelling the run cancels the action; it is not a failure."""
        started = asyncio.Event()

        async def fix() -> None:
            started.set()
            await asyncio.Event().wait()

        task = asyncio.get_running_loop().create_task(
            CallableAction("fix", fix).run()
        )
        await started.wait()
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task

    def test_not_callable(self) -> None:
        """A non-callable is refused at construction."""
        with pytest.raises(ConfigError, match=r"must be callable"):
            CallableAction("fix", "restart")  # type: ignore[arg-type]

    def test_attributes(self) -> None:
        """The action exposes its kind and timeout, and a readable repr."""
        action = CallableAction("fix", lambda: None, timeout=3)

        assert ("callable", 3.0, "CallableAction('fix')") == (
            action.kind,
            action.timeout,
            repr(action),
        )
