"""``selfheal run``: load the config, wire the runtime, serve HTTP, stop cleanly.

Every start-up problem (a bad config, an invalid flag, a port in use, a
public address without an admin token) ends with a one-line message and
exit code 2, never a traceback. Ctrl+C and SIGTERM stop the runtime
(tasks cancelled, processes stopped, audit trail flushed) and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from selfhealing._logging import configure_logging
from selfhealing.api import create_app
from selfhealing.config import Config, load_config
from selfhealing.exceptions import SelfHealingError
from selfhealing.notify import base_url
from selfhealing.runtime import Runtime


__all__ = ["StartupError", "is_loopback", "serve"]

_log = logging.getLogger("selfhealing.daemon")

EXIT_OK = 0
EXIT_STARTUP = 2
SHUTDOWN_GRACE = 5.0


class StartupError(SelfHealingError):
    """The daemon cannot start; the message says why and what to do."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = " (is another selfheal running? choose another with --port)"
        raise StartupError(
            f"cannot listen on {host}:{port}: {reason}{hint}"
        ) from None
    return sock


def prepare(
    config_path: str | Path | None,
    *,
    host: str | None = None,
    port: int | None = None,
    directory: Path | None = None,
) -> tuple[Runtime, str, int]:
    """Load and check everything that can fail before serving."""
    config: Config = load_config(config_path)
    runtime = Runtime(config, directory=directory)
    host = host or config.server.host
    port = port if port is not None else config.server.port
    if not is_loopback(host) and not runtime.admin_token:
        raise StartupError(
            f"refusing to listen on {host} without an admin token: set "
            "SELFHEAL_ADMIN_TOKEN (environment or .env.local), or bind to "
            "127.0.0.1"
        )
    return runtime, host, port


class _Server(uvicorn.Server):
    """uvicorn, with SIGINT and SIGTERM handled on our loop.

    uvicorn re-raises a captured signal once it has stopped serving, which
    would kill the process before the runtime stops (and exit 143 instead
    of 0). Here a signal only asks the server to exit; run() then stops the
    runtime and returns normally.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._exit_requested, sig)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    def _exit_requested(self, sig: signal.Signals) -> None:
        if self.should_exit and sig is signal.SIGINT:
            self.force_exit = True  # a second Ctrl+C
        self.should_exit = True
        _log.info("%s received: shutting down", sig.name)

    on_shutdown: Callable[[], object] | None = None

    async def shutdown(
        self, sockets: list[socket.socket] | None = None
    ) -> None:
        # First, so open event streams end: uvicorn waits for them.
        if self.on_shutdown is not None:
            self.on_shutdown()
        await super().shutdown(sockets)


async def _serve(
    runtime: Runtime, sock: socket.socket, *, access_log: bool
) -> bool:
    app = create_app(runtime, manage_runtime=False)
    server = _Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=access_log,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE),
            lifespan="off",
            server_header=False,
        )
    )
    server.on_shutdown = runtime.stopping.set
    if runtime.notifier is not None:  # --port may differ from the config
        runtime.notifier.address = base_url(*sock.getsockname()[:2])
    try:
        await runtime.start()
    except SelfHealingError as exc:
        raise StartupError(str(exc)) from None
    _tune_gc()
    host, port = sock.getsockname()[:2]
    _log.info("serving on http://%s:%s (status: /api/status)", host, port)
    try:
        await server.serve(sockets=[sock])
    finally:
        await runtime.stop()
    return server.started


def _tune_gc() -> None:
    """Keep the cyclic garbage collector out of the probes' way.

    With thousands of targets, objects that live one tick (timers, run
    tasks) reach the oldest generation and trigger full collections of
    the whole heap: 45-75 ms pauses that made check starts late
    (bench/check_scale.py). Freezing what start-up built and collecting
    the young generation less often removes them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _no_fd_inheritance() -> None:
    """Mark every descriptor this process inherited close-on-exec.

    Supervised children must not inherit them: uvloop, unlike asyncio,
    does not close extra descriptors when it spawns, and an inherited pipe
    or socket held open by a child can keep its peer waiting forever.
    """
    try:
        entries = list(Path("/proc/self/fd").iterdir())
    except OSError:
        return
    for entry in entries:
        fd = int(entry.name)
        if fd > 2:  # noqa: PLR2004 (after stdin, stdout, stderr)
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def _runner() -> Callable[[Coroutine[Any, Any, bool]], bool]:
    """Run on uvloop where it is installed (much cheaper checks)."""
    try:
        import uvloop  # noqa: PLC0415 (optional)
    except ImportError:
        return asyncio.run

    def run(coro: Coroutine[Any, Any, bool]) -> bool:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)

    return run


def serve(
    config_path: str | Path | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    directory: Path | None = None,
) -> int:
    """Run the daemon until Ctrl+C or SIGTERM; return the exit code."""
    try:
        runtime, host, port = prepare(
            config_path, host=host, port=port, directory=directory
        )
        sock = _bind(host, port)
    except SelfHealingError as exc:
        print(f"selfheal: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_STARTUP
    _no_fd_inheritance()
    setup = configure_logging(
        log_dir=runtime.log_dir,
        debug=runtime.settings.value("DEBUG") or runtime.config.logging.debug,
        extra_loggers=("uvicorn", "uvicorn.error"),
    )
    try:
        _runner()(
            _serve(runtime, sock, access_log=runtime.config.server.access_log)
        )
    except StartupError as exc:
        _log.error("cannot start: %s", exc)
        print(f"selfheal: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_STARTUP
    except KeyboardInterrupt:
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.close()
        _log.info("daemon exited")
        setup.close()
    return EXIT_OK
