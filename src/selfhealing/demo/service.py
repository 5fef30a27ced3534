"""The demo's sample service: a tiny HTTP server that misbehaves on cue.

    python -m selfhealing.demo.service serve --port 8765 --dir DEMO_DIR
    python -m selfhealing.demo.service clear-cache --dir DEMO_DIR

It answers ``GET /health`` and ``GET /``. The demo writes ``scenes.json`` (re-read when it changes)
into DEMO_DIR: a start time, scenes at offsets from it, and a cycle after
which the schedule repeats. A scene breaks
the copy of the service that is running when it begins, so a restart (a
new copy) fixes it, except where a scene says otherwise:

- ``error``: answers 500 until restarted;
- ``crash``: exits with code 3;
- ``hang``: stops answering (requests hang) until restarted;
- ``sticky``: answers 500 and keeps doing so across restarts until its
  cache is cleared (the second rung of the demo's ladder);
- ``outage``: answers 500 for a few seconds whatever is done (a dependency
  is down), so the first healing attempt fails and the engine backs off;
- ``leak_mb_per_s`` in the schedule: every copy keeps that much memory a
  second (a slow leak that a forecast rule catches before it hurts);
- ``DEMO_DIR/broken-for-good`` (``selfheal demo --chaos``): answers 500,
  whatever is done, until the file is removed.

Standard library only: the daemon runs it with the same interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time

from pathlib import Path

from selfhealing.demo._files import (
    BROKEN_FOR_GOOD,
    SCENES_FILE,
    STICKY_CLEARED,
)


__all__ = ["main"]


def _say(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"{stamp} demo-service[{os.getpid()}] {message}", flush=True)  # noqa: T201


class Service:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started = time.time()
        self.epoch = 0.0
        self.cycle = 3600.0
        self.scenes: list[dict[str, float | str]] = []
        self.leak_rate = 0.0  # bytes per second this copy keeps
        self._leaked: list[bytes] = []
        self._read_at = -1.0
        self.mode = "ok"
        self._reload()

    def _reload(self) -> None:
        """Read the schedule again when it changed (tests rewrite it)."""
        path = self.directory / SCENES_FILE
        try:
            changed = path.stat().st_mtime
        except FileNotFoundError:
            return
        if changed == self._read_at:
            return
        spec = json.loads(path.read_text())
        self.epoch = spec["epoch"]
        self.cycle = spec["cycle"]
        self.scenes = spec["scenes"]
        self.leak_rate = float(spec.get("leak_mb_per_s", 0)) * 1e6
        self._read_at = changed

    def _occurrences(
        self, now: float
    ) -> list[tuple[float, dict[str, float | str]]]:
        """Each scene's latest start (the schedule repeats every cycle)."""
        found = []
        for scene in self.scenes:
            at = self.epoch + float(scene["at"])
            if at > now:
                continue
            at += (now - at) // self.cycle * self.cycle
            found.append((at, scene))
        return found

    def _active(self) -> str:
        """What this copy of the service does right now."""
        self._reload()
        if (self.directory / BROKEN_FOR_GOOD).exists():
            return "broken"
        now = time.time()
        cleared = self.directory / STICKY_CLEARED
        cleared_at = cleared.stat().st_mtime if cleared.exists() else 0.0
        modes = set()
        for at, scene in self._occurrences(now):
            kind = str(scene["kind"])
            if kind == "outage":
                if now < at + float(scene.get("seconds", 8)):
                    modes.add(kind)
            elif kind == "sticky":
                if cleared_at < at:
                    modes.add(kind)
            elif at >= self.started:
                modes.add(kind)  # this copy was running when it began
        for mode in ("outage", "sticky", "hang", "error", "crash"):
            if mode in modes:
                return mode
        return "ok"

    async def tick(self) -> None:
        """Announce mode changes, crash on cue, and leak memory slowly."""
        step = 0.1
        while True:
            if self.leak_rate:
                # Written bytes, so the pages really count in the RSS.
                self._leaked.append(b"x" * int(self.leak_rate * step))
            mode = self._active()
            if mode != self.mode:
                _say(f"now {mode}")
                self.mode = mode
            if mode == "crash":
                _say("crashing (exit code 3)")
                os._exit(3)
            await asyncio.sleep(step)

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """HTTP/1.1 with keep-alive, as the daemon's checks use it."""
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                mode = self._active()
                if mode == "hang":
                    await asyncio.Event().wait()
                if mode in ("error", "sticky", "outage", "broken"):
                    status, body = "500 Internal Server Error", b"error\n"
                    _say(f"{line} -> 500 ({mode})")
                else:
                    status, body = "200 OK", b"ok\n"
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        writer.close()


async def serve(port: int, directory: Path) -> None:
    service = Service(directory)
    server = await asyncio.start_server(service.handle, "127.0.0.1", port)
    _say(f"listening on http://127.0.0.1:{port}")
    async with server:
        await asyncio.gather(server.serve_forever(), service.tick())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="selfhealing.demo.service")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--dir", type=Path, required=True)
    clear = sub.add_parser("clear-cache")
    clear.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "clear-cache":
        (args.dir / STICKY_CLEARED).touch()
        _say("cache cleared")
        return 0
    try:
        asyncio.run(serve(args.port, args.dir))
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
