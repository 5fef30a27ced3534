"""A target that flaps every 100 ms for a whole minute.

Each healing "works" (the next probe passes) and fails again 100 ms later,
so every attempt is followed by a relapse, and every relapse lengthens
the backoff. What must hold: the number of attempts stays under the bound
the backoff settings allow, no attempt starts before the previous failure
plus its backoff delay, and the daemon's event loop never lags 100 ms.

The daemon runs in this process (``start_live``) so that a probe of our
own can sit on its event loop: a 10 ms sleep in a loop, recording how late
each wake-up is, which sees every stall longer than ~10 ms. The daemon's
own lag sampler (every 100 ms here) is read as well.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from selfhealing.backoff import Backoff
from support import LiveDaemon, free_port


pytestmark = pytest.mark.slow

FLAP_PERIOD = 0.1  # seconds healthy, then as long unhealthy
DURATION = 60.0  # the minute, for real
MAX_LAG = 0.1
BASE, CAP = 0.1, 2.0

# Answers 200 during even tenths of a second, 503 during odd ones.
FLAPPER = """
import http.server, sys, time

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        up = int(time.monotonic() / PERIOD) % 2 == 0
        self.send_response(200 if up else 503)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""".replace("PERIOD", repr(FLAP_PERIOD))


def config(port: int) -> dict[str, Any]:
    return {
        "engine": {
            "backoff_base": f"{BASE}s",
            "backoff_max": f"{CAP}s",
            # Not dormant within the minute: the backoff alone must bound it.
            "max_consecutive_failures": 1000,
        },
        "resources": {"interval": "100ms", "ring": 2000},
        "targets": [
            {
                "name": "flappy",
                "actions": ["nudge"],
                "verify_timeout": "2s",
                "verify_settle": "0s",
                # Every relapse counts: the streak (and the delay) grows.
                "relapse_window": "1h",
                "check": {
                    "type": "http",
                    "url": f"http://127.0.0.1:{port}/",
                    "interval": "50ms",
                    "timeout": "200ms",
                    "failure_threshold": 1,
                    "success_threshold": 1,
                },
            }
        ],
        "actions": [{"name": "nudge", "type": "command", "command": ["true"]}],
    }


def attempt_bound(duration: float) -> int:
    """The most attempts the backoff allows in *duration* seconds: the
    k-th attempt starts at least delay(1) + ... + delay(k-1) after the
    first, delay(n) = min(base * 2**n, cap) after the n-th failure."""
    backoff = Backoff.of(base=BASE, cap=CAP)
    attempts, elapsed = 1, 0.0
    while elapsed + backoff.delay(attempts) <= duration:
        elapsed += backoff.delay(attempts)
        attempts += 1
    return attempts


def trail(store: Any, **filters: str) -> list[Any]:
    """Every matching audit record, oldest first, page by page."""
    found: list[Any] = []
    while page := store.query(
        limit=1000, since_id=found[-1].id if found else 0, **filters
    ):
        found += page
    return found


class LagProbe:
    """Sleeps 10 ms at a time on the daemon's loop; keeps the worst lateness."""

    def __init__(self, live: LiveDaemon) -> None:
        self.lags: list[float] = []
        self._stop = False
        self._future = asyncio.run_coroutine_threadsafe(self._run(), live.loop)

    async def _run(self) -> None:
        while not self._stop:
            started = time.monotonic()
            await asyncio.sleep(0.01)
            self.lags.append(time.monotonic() - started - 0.01)

    def stop(self) -> list[float]:
        self._stop = True
        self._future.result(timeout=5)
        return self.lags


@pytest.fixture(name="flapper")
def _flapper() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", FLAPPER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "flapper did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.kill()
        process.wait()


class TestFlapping:
    @pytest.mark.timeout(DURATION + 60)
    def test_bounded_attempts_backoff_and_no_loop_lag(
        self,
        start_live: Callable[..., LiveDaemon],
        flapper: int,
        figures: dict[str, Any],
    ) -> None:
        """A minute of flapping every 100 ms: attempts under the backoff's
        bound, each one at least its backoff delay after the failure
        before it, and the loop never 100 ms late."""
        live = start_live(config(flapper))
        probe = LagProbe(live)
        started = time.time()
        time.sleep(DURATION)  # the test thread stays out of the way
        lags = probe.stop()
        runtime = live.runtime
        assert runtime.audit.flush(5.0)
        records = trail(runtime.audit, kind="healing.*", target="flappy")
        own_lags = [
            lag
            for _, lag in runtime.resources.series("daemon.loop_lag").samples()
        ]
        engine = runtime.engine.snapshot()

        attempts = [r for r in records if r.kind == "healing.attempted"]
        setbacks = [
            r
            for r in records
            if r.kind in {"healing.relapsed", "healing.failed"}
        ]
        checks = runtime.targets["flappy"].snapshot().checks
        bound = attempt_bound(time.time() - started)
        # It did flap, and it was healed and relapsed over and over.
        assert checks > DURATION / 0.05 * 0.8
        assert len(attempts) >= 5
        assert len(attempts) <= bound
        assert engine.total_attempts == len(attempts)
        assert engine.relapses + engine.failed_healings == len(setbacks)
        # No attempt before the previous setback's time + its delay.
        early = []
        for setback in setbacks:
            delay = setback.data["backoffDelay"] / 1000
            following = [a for a in attempts if a.id > setback.id]
            # Event times are wall-clock, stamped after the log line: 50 ms
            # of slack still tells a 200 ms backoff from none.
            if following and following[0].at < setback.at + delay - 0.05:
                early.append((setback.id, following[0].at - setback.at, delay))
        assert [] == early
        # The delays did grow, up to the cap.
        delays = [s.data["backoffDelay"] for s in setbacks]
        assert delays[:4] == [200, 400, 800, 1600]
        assert set(delays[4:]) == {2000}
        worst = max(lags)
        assert worst < MAX_LAG, sorted(lags)[-10:]
        assert len(own_lags) > DURATION / 0.1 * 0.8
        assert max(own_lags) < MAX_LAG
        figures.update(
            {
                "duration (s)": round(time.time() - started, 1),
                "probes": checks,
                "attempts": len(attempts),
                "attempt bound": bound,
                "relapses": engine.relapses,
                "backoff delays (ms)": delays[:6],
                "max loop lag, 10 ms probe (ms)": round(worst * 1000, 1),
                "max loop lag, daemon sampler (ms)": round(
                    max(own_lags) * 1000, 1
                ),
                "loop lag samples": len(lags),
            }
        )
