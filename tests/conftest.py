from __future__ import annotations

import asyncio
import socket
import threading
import time

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from selfhealing.api import create_app
from selfhealing.config import Config, parse_config
from selfhealing.runtime import Runtime
from selfhealing.testing import FakeClock
from support import (
    DaemonProcess,
    LiveDaemon,
    kill_leftovers,
    start_daemon_process,
    stop_daemon_process,
)


T = TypeVar("T")


@pytest.fixture(name="anyio_backend")
def _anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="clock")
def _clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(name="start_live")
def _start_live(tmp_path: Path) -> Iterator[Callable[..., LiveDaemon]]:
    """Start live daemons (config dict, environ) that stop at teardown."""
    stops: list[Callable[[], None]] = []

    def start(
        config: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> LiveDaemon:
        runtime = Runtime(
            parse_config(dict(config or {})) if config else Config(),
            directory=tmp_path,
            environ=dict(environ or {}),
        )
        app = create_app(runtime)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, lifespan="on")
        )
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_until_complete,
            args=(server.serve(sockets=[sock]),),
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("live daemon did not start")
            time.sleep(0.01)

        def stop() -> None:
            if not loop.is_closed():  # idempotent: a test may stop it first
                # Open event streams end on this; uvicorn waits for them.
                loop.call_soon_threadsafe(runtime.stopping.set)
            server.should_exit = True
            thread.join(15)
            loop.close()
            sock.close()

        stops.append(stop)
        port = sock.getsockname()[1]
        return LiveDaemon(f"http://127.0.0.1:{port}", runtime, loop, stop)

    yield start
    for stop in reversed(stops):
        stop()


@pytest.fixture(name="live")
def _live(start_live: Callable[..., LiveDaemon]) -> LiveDaemon:
    return start_live()


@pytest.fixture(name="spawn_daemon")
def _spawn_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start `selfheal run` subprocesses in tmp_path; stopped at teardown."""
    started: list[DaemonProcess] = []

    def spawn(
        config: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> DaemonProcess:
        if config is not None:
            (tmp_path / "selfheal.toml").write_text(config)
        daemon = start_daemon_process(tmp_path, port=port, env=env, args=args)
        started.append(daemon)
        return daemon

    yield spawn
    for daemon in started:
        stop_daemon_process(daemon)
    kill_leftovers(tmp_path)
