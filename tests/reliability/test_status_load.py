"""1,000 requests/s on /api/status while the daemon heals.

Healing latency here is what an operator waits for: from the moment the
supervised service is killed (kill -9, by the test) to the moment the
daemon has restarted it and verified it healthy (the ``healing.succeeded``
event's timestamp). It is measured without load and with ~1,000 GET
/api/status per second from a separate process (wrk when installed, else
an open-loop aiohttp generator), in interleaved blocks so that drifts of
the machine hit both sides alike; the medians must be within 20%.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import DaemonProcess, events, free_port, status, wait_for


pytestmark = pytest.mark.slow

RATE = 1000  # requests per second
ROUNDS = 4  # blocks of each kind, interleaved
PER_BLOCK = 5  # healings per block
MAX_SLOWDOWN = 1.2

# The supervised service: a bare socket server that listens ~15 ms after
# exec (python -S, no imports but socket). A heavier one (http.server takes
# ~50 ms) would start right at the edge of the daemon's 50 ms verification
# poll, and the figure would measure on which side of that edge a CPU
# shared with the load lands the child's start-up, not the daemon.
SERVICE = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen(64)
while True:
    client, _ = server.accept()
    client.recv(65536)
    client.sendall(
        b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n"
        b"connection: close\\r\\n\\r\\nok"
    )
    client.close()
"""
CONFIG = """
[engine]
backoff_base = "50ms"
backoff_max = "200ms"

[[processes]]
name = "web"
command = [{python}, "-S", "service.py", "{port}"]
stop_timeout = "2s"

[[targets]]
name = "web"
actions = ["restart-web"]
verify_timeout = "10s"
verify_settle = "0s"
relapse_window = "0s"
[targets.check]
type = "http"
url = "http://127.0.0.1:{port}/"
interval = "100ms"
timeout = "500ms"
failure_threshold = 2

[[actions]]
name = "restart-web"
type = "restart_process"
process = "web"
"""
# wrk is closed-loop; a pause per request per connection paces it.
WRK_PACING = """
function delay()
  return {pause_ms}
end
"""
WRK_CONNECTIONS = 12
WRK_PAUSE_MS = 10
# The fallback: open loop, one request every 1/RATE s, 64 connections.
GENERATOR = """
import asyncio, sys, time
import aiohttp

async def main(url, rate):
    done = {"ok": 0, "bad": 0}
    limit = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=limit) as session:
        async def one():
            try:
                async with session.get(url) as response:
                    await response.read()
                    done["ok" if response.status == 200 else "bad"] += 1
            except aiohttp.ClientError:
                done["bad"] += 1
        started = time.monotonic()
        sent = 0
        tasks = set()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(2, stop.set)
        while not stop.is_set():
            due = started + sent / rate
            wait = due - time.monotonic()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    break
                except TimeoutError:
                    pass
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
    print(f"Requests/sec: {done['ok'] / elapsed:.1f}")
    print(f"Non-2xx or 3xx responses: {done['bad']}")

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


class Load:
    """~RATE GET /api/status per second from another process."""

    def __init__(self, url: str, directory: Path) -> None:
        self.tool = "wrk" if shutil.which("wrk") else "aiohttp"
        if self.tool == "wrk":
            script = directory / "pacing.lua"
            script.write_text(WRK_PACING.format(pause_ms=WRK_PAUSE_MS))
            argv = [
                "wrk",
                "-t1",
                f"-c{WRK_CONNECTIONS}",
                "-d600s",
                "-s",
                str(script),
                url,
            ]
        else:
            argv = [sys.executable, "-c", GENERATOR, url, str(RATE)]
        self.started = time.monotonic()
        # In the test's directory, so kill_leftovers finds it whatever happens.
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=directory,
        )

    def kill(self) -> None:
        """End it at once (a failed block must not leave it running)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=20)

    def stop(self) -> tuple[float, int]:
        """Stop; (requests per second, failed requests)."""
        self.process.send_signal(signal.SIGINT)
        out, _ = self.process.communicate(timeout=20)
        rate = bad = None
        for line in out.splitlines():
            words = line.split()
            if line.startswith("Requests/sec:"):
                rate = float(words[1])
            elif "Non-2xx" in line:
                bad = int(words[-1])
            elif line.strip().startswith("Socket errors:"):
                bad = (bad or 0) + sum(
                    int(w.rstrip(","))
                    for w in words
                    if w.rstrip(",").isdigit()
                )
        assert rate is not None, out
        return rate, bad or 0


class TestStatusLoad:
    @pytest.mark.timeout(300)
    def test_healing_latency_is_unchanged_under_1000_rps(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        tmp_path: Path,
        figures: dict[str, Any],
    ) -> None:
        """kill -9 -> verified healthy again: the median under ~1,000
        /api/status requests per second is within 20% of the median
        without, measured in interleaved blocks."""
        (tmp_path / "service.py").write_text(SERVICE)
        port = free_port()
        daemon = spawn_daemon(
            CONFIG.format(python=json.dumps(sys.executable), port=port)
        )

        def heal_once() -> float:
            wait_for(
                lambda: (
                    status(daemon)["targets"][0]["health"] == "healthy"
                    and status(daemon)["processes"][0]["state"] == "running"
                ),
                what="web healthy",
            )
            healed = status(daemon)["selfHealing"]["successfulHealings"]
            since = events(daemon)[-1]["id"]
            time.sleep(0.2)  # not in step with the probe schedule
            pid = status(daemon)["processes"][0]["pid"]
            killed = time.time()
            os.kill(pid, signal.SIGKILL)
            wait_for(
                lambda: (
                    status(daemon)["selfHealing"]["successfulHealings"]
                    > healed
                ),
                what="healing",
            )
            succeeded = "healing.succeeded"
            wait_for(
                lambda: bool(events(daemon, since=since, kind=succeeded)),
                what="the healing on record",
            )
            [done] = events(daemon, since=since, kind=succeeded)
            return float(done["atEpoch"]) - killed

        def measure() -> tuple[list[float], list[float], list[float], int]:
            """Interleaved blocks: (quiet, loaded, rates, failed requests)."""
            quiet: list[float] = []
            loaded: list[float] = []
            rates: list[float] = []
            failures = 0
            for _ in range(ROUNDS):
                quiet += [heal_once() for _ in range(PER_BLOCK)]
                load = Load(daemon.url + "/api/status", tmp_path)
                try:
                    time.sleep(1.0)  # at full rate before the first kill
                    loaded += [heal_once() for _ in range(PER_BLOCK)]
                    rate, bad = load.stop()
                finally:
                    load.kill()
                rates.append(rate)
                failures += bad
            return quiet, loaded, rates, failures

        heal_once()  # warm-up: imports, caches, first spawn
        quiet, loaded, rates, failures = measure()
        ratio = statistics.median(loaded) / statistics.median(quiet)
        first = ratio
        if ratio > MAX_SLOWDOWN:
            # The machine is shared: a neighbour's burst can land on one
            # side. A real slowdown shows again; noise rarely does twice.
            quiet, loaded, rates, failures = measure()
            ratio = statistics.median(loaded) / statistics.median(quiet)
        figures.update(
            {
                "load tool": "wrk" if shutil.which("wrk") else "aiohttp",
                "status requests/s (per block)": [round(r) for r in rates],
                "failed status requests": failures,
                "healings measured": len(quiet) + len(loaded),
                "healing p50 quiet (s)": round(statistics.median(quiet), 3),
                "healing p50 loaded (s)": round(statistics.median(loaded), 3),
                "loaded / quiet": round(ratio, 3),
                "loaded / quiet, first measurement": round(first, 3),
            }
        )
        assert 0 == failures
        assert min(rates) >= 0.9 * RATE
        assert ratio <= MAX_SLOWDOWN, (sorted(quiet), sorted(loaded))
        engine = status(daemon)["selfHealing"]
        assert 0 == engine["failedHealings"]
