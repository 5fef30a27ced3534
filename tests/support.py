"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]

from selfhealing.runtime import Runtime


T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveDaemon:
    """A Runtime served by uvicorn on loopback, in a thread of this process."""

    url: str
    runtime: Runtime
    loop: asyncio.AbstractEventLoop
    stop: Callable[[], None] = lambda: None  # what the fixture's teardown does

    def on_loop(self, fn: Callable[[], T]) -> T:
        """Run *fn* on the daemon's event loop thread and return its result."""
        done: Future[T] = Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(call)
        return done.result(timeout=10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=10, **kwargs)


@dataclass
class DaemonProcess:
    """`selfheal run` as a real subprocess."""

    url: str
    process: subprocess.Popen[str]
    directory: Path

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.communicate(timeout=15)
        return self.process.returncode

    def output(self) -> str:
        out, _ = self.process.communicate(timeout=15)
        return out


def start_daemon_process(
    directory: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> DaemonProcess:
    """`selfheal run` in *directory*, healthy; the tests' own FEATURE_*,
    SELFHEAL_*, ANTHROPIC_* and DEBUG settings are not passed on."""
    port = port or free_port()
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FEATURE_", "SELFHEAL_", "ANTHROPIC_"))
        and k != "DEBUG"
    }
    environment.update(env or {})
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "selfhealing",
            "run",
            "--port",
            str(port),
            *args,
        ],
        cwd=directory,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    daemon = DaemonProcess(f"http://127.0.0.1:{port}", process, directory)
    try:
        wait_healthy(daemon.url, process)
    except RuntimeError:
        stop_daemon_process(daemon)
        raise
    return daemon


def stop_daemon_process(daemon: DaemonProcess) -> None:
    """SIGTERM (the daemon stops its supervised processes itself), SIGKILL
    if it lingers; then whatever still runs in its directory."""
    if daemon.process.poll() is None:
        daemon.process.terminate()
        try:
            daemon.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
    daemon.process.communicate(timeout=10)  # reaps, closes the pipe
    kill_leftovers(daemon.directory)


def wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, _ = process.communicate()
            raise RuntimeError(f"daemon exited {process.returncode}: {out}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("daemon did not become healthy")


def processes_in(directory: Path) -> Iterator[psutil.Process]:
    """Every process working in *directory* or below (zombies included)."""
    root = str(directory)
    for process in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
        cwd = process.info.get("cwd") or ""
        if cwd == root or cwd.startswith(root + "/"):
            yield process


def kill_leftovers(directory: Path) -> list[int]:
    """Kill any process still running in *directory* (a test's tmp_path):
    a test that killed its daemon with -9 must not leave children behind."""
    killed = []
    for process in processes_in(directory):
        try:
            process.kill()
            killed.append(process.pid)
        except psutil.Error:
            pass
    return killed


class Served(Protocol):
    """A daemon reachable over HTTP (DaemonProcess or LiveDaemon)."""

    url: str


def status(daemon: Served) -> dict[str, Any]:
    """GET /api/status."""
    return dict(httpx.get(daemon.url + "/api/status", timeout=5).json())


def events(daemon: Served, **params: object) -> list[dict[str, Any]]:
    """GET /api/events with these filters: up to 1,000, in id order."""
    response = httpx.get(
        daemon.url + "/api/events",
        params={"limit": 1000, **params},
        timeout=5,
    )
    return list(response.json()["events"])


def wait_for(
    predicate: Callable[[], bool], *, what: str, timeout: float = 30
) -> None:
    """Poll *predicate* until it holds; fail naming *what* after *timeout*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def integrity(database: Path) -> list[tuple[str]]:
    """SQLite's integrity check of *database*, opened read-only."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute("PRAGMA integrity_check").fetchall()
