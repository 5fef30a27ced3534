"""Healing time: break an HTTP service, time until the daemon has healed it.

    python bench/healing_time.py [--quick] [--repeats N]
        [--intervals 1,0.2] [--kinds error,hang] [--json FILE]

The real daemon (``python -m selfhealing run``) supervises the demo
service (``python -m selfhealing.demo.service serve``) as a
``[[processes]]`` entry, with one http target on its ``/health`` and a
``restart_process`` action. The check uses realistic settings: timeout
500 ms, failure_threshold 3, and an interval of 1 s (then 200 ms, a
second daemon). Everything else is the daemon's default: verify_settle
1 s (healthy that long after the restart before the healing counts),
relapse window 10 intervals, engine backoff.

Each repeat breaks the running copy of the service, in a way a restart
fixes: it writes ``scenes.json`` (atomically) with a scene starting now,
which the service re-reads, so the copy running at that moment answers
500 (``error``) or stops answering (``hang``) until restarted; a new copy
is unaffected. Kinds alternate. From the break, polled every ~20 ms over
127.0.0.1:

* detected: ``GET /api/targets/web`` says unhealthy;
* restarted: ``GET /api/processes`` shows a new pid;
* healthy: the target is healthy again (its first passing probe);
* healed: ``GET /api/status`` shows ``selfHealing.successfulHealings``
  incremented (verified: healthy for verify_settle after the action).

Percentiles are nearest rank, so the p95 of fewer than 20 breaks (10 by
default) is the slowest of them. A state polling missed (say, unhealthy
for less than one poll) is left out of that stage's percentiles and
counted in ``missed``.

Each break lands after a random pause within one check interval, once
the previous healing is past its relapse window (so a break never counts
as a relapse). Reference: Kubernetes' documented probe defaults, period
10 s x failureThreshold 3, restart a dead endpoint ~30 s after it breaks
(20-30 s: the first failing probe comes 0-10 s after the break, then two
more periods).

Everything started is stopped at the end, also on Ctrl+C or an error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import textwrap
import time

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _support import (
    Janitor,
    free_port,
    http_get,
    load_average,
    percentile,
    raise_on_sigterm,
    wait_http,
)


POLL = 0.02
TIMEOUT = 60.0  # seconds a break may take to heal before we give up
# The http check's settings, in the TOML, the header and each Series.
CHECK_TIMEOUT = 0.5  # seconds
FAILURE_THRESHOLD = 3
STAGES = ("detected_ms", "restarted_ms", "healthy_ms", "healed_ms")
K8S_PERIOD = 10.0
K8S_FAILURE_THRESHOLD = 3
K8S_RESTART_S = K8S_PERIOD * K8S_FAILURE_THRESHOLD  # ~30 s, the documented
TARGET = "web"


@dataclass
class Heal:
    kind: str
    detected_ms: float = math.nan
    restarted_ms: float = math.nan
    healthy_ms: float = math.nan
    healed_ms: float = math.nan


@dataclass
class Series:
    interval: float
    timeout: float
    failure_threshold: int
    heals: list[Heal] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def values(self, what: str, kind: str | None = None) -> list[float]:
        """The *what* times taken; NaN (a state polling missed) left out."""
        taken = [
            getattr(h, what)
            for h in self.heals
            if kind is None or h.kind == kind
        ]
        return [v for v in taken if not math.isnan(v)]

    def stat(self, what: str, q: float, kind: str | None = None) -> float:
        return percentile(self.values(what, kind), q)

    def stats(self, q: float) -> dict[str, float]:
        return {what: self.stat(what, q) for what in STAGES}

    def missed(self) -> dict[str, int]:
        """Per stage, how many heals polling never saw in that state."""
        return {
            what: len(self.heals) - len(self.values(what)) for what in STAGES
        }


class Daemon:
    """The daemon, supervising the demo service, with one http target."""

    def __init__(
        self, janitor: Janitor, workdir: Path, interval: float
    ) -> None:
        self.janitor = janitor
        self.workdir = workdir
        self.interval = interval
        self.web = free_port()
        self.api = free_port()
        self.scenes = workdir / "demo" / "scenes.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        demo = self.scenes.parent
        demo.mkdir(parents=True)
        argv = [
            sys.executable,
            "-m",
            "selfhealing.demo.service",
            "serve",
            "--port",
            str(self.web),
            "--dir",
            str(demo),
        ]
        command = ", ".join(json.dumps(part) for part in argv)
        config = self.workdir / "selfheal.toml"
        config.write_text(
            textwrap.dedent(
                f"""\
                [[processes]]
                name = "{TARGET}"
                command = [{command}]

                [[targets]]
                name = "{TARGET}"
                actions = ["restart-{TARGET}"]

                [targets.check]
                type = "http"
                url = "http://127.0.0.1:{self.web}/health"
                interval = "{self.interval * 1000:.0f}ms"
                timeout = "{CHECK_TIMEOUT * 1000:.0f}ms"
                failure_threshold = {FAILURE_THRESHOLD}

                [[actions]]
                name = "restart-{TARGET}"
                type = "restart_process"
                process = "{TARGET}"
                """
            ),
            encoding="utf-8",
        )
        self.proc = self.janitor.start(
            [
                sys.executable,
                "-m",
                "selfhealing",
                "run",
                "--config",
                str(config),
                "--port",
                str(self.api),
            ],
            cwd=self.workdir,
            log=self.workdir / "daemon.out",
        )
        wait_http(self.api, "/healthz", process=self.proc, timeout=30)
        # The service keeps connections alive (HTTP/1.1), which http_get's
        # read-to-close does not suit: the daemon's own check says when it
        # serves (settled()).

    def get(self, path: str) -> Any:
        status, body = http_get(self.api, path, timeout=2.0)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        return json.loads(body)

    def target(self) -> dict[str, Any]:
        return self.get(f"/api/targets/{TARGET}")  # type: ignore[no-any-return]

    def pid(self) -> int | None:
        for process in self.get("/api/processes"):
            if process["name"] == TARGET:
                return process["pid"]  # type: ignore[no-any-return]
        return None

    def healings(self) -> int:
        return int(
            self.get("/api/status")["selfHealing"]["successfulHealings"]
        )

    def settled(self, timeout: float = 60.0) -> None:
        """Wait until the target is healthy and no healing is running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            target = self.target()
            if target["health"] == "healthy" and not target["healing"]:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{TARGET} not healthy after {timeout} s")

    def break_it(self, kind: str) -> float:
        """Start a *kind* scene now; the perf_counter time it began."""
        spec = {
            "epoch": time.time(),
            "cycle": 10**9,
            "scenes": [{"at": 0, "kind": kind}],
        }
        start = time.perf_counter()
        staging = self.scenes.with_suffix(".tmp")
        staging.write_text(json.dumps(spec), encoding="utf-8")
        staging.replace(self.scenes)  # the service never reads half a file
        return start

    def stop(self) -> None:
        if self.proc is not None:
            self.janitor.stop(self.proc)


def heal_once(daemon: Daemon, kind: str) -> Heal:
    healed_before = daemon.healings()
    pid_before = daemon.pid()
    start = daemon.break_it(kind)
    heal = Heal(kind)

    def since() -> float:
        return (time.perf_counter() - start) * 1000

    while since() < TIMEOUT * 1000:
        target = daemon.target()
        at = since()
        unhealthy = target["health"] == "unhealthy"
        if unhealthy and math.isnan(heal.detected_ms):
            heal.detected_ms = at
        if (
            not math.isnan(heal.detected_ms)
            and math.isnan(heal.healthy_ms)
            and target["health"] == "healthy"
        ):
            heal.healthy_ms = at
        if math.isnan(heal.restarted_ms):
            pid = daemon.pid()
            if pid is not None and pid != pid_before:
                heal.restarted_ms = since()
        if daemon.healings() > healed_before:
            heal.healed_ms = since()
            if math.isnan(heal.healthy_ms):
                heal.healthy_ms = heal.healed_ms
            return heal
        time.sleep(POLL)
    raise TimeoutError(f"{kind}: not healed {TIMEOUT:.0f} s after the break")


def measure(
    janitor: Janitor,
    root: Path,
    interval: float,
    *,
    kinds: list[str],
    repeats: int,
    rng: random.Random,
) -> Series:
    series = Series(interval, CHECK_TIMEOUT, FAILURE_THRESHOLD)
    workdir = root / f"interval-{interval:g}"
    workdir.mkdir()
    daemon = Daemon(janitor, workdir, interval)
    relapse_window = 10 * interval  # the daemon's default
    number = 0
    try:
        daemon.start()
        daemon.settled()
        for number in range(repeats):
            kind = kinds[number % len(kinds)]
            time.sleep(rng.uniform(0, interval))
            heal = heal_once(daemon, kind)
            series.heals.append(heal)
            print(
                f"  interval {interval:g} s, {kind}: detected "
                f"{heal.detected_ms:.0f} ms, restarted "
                f"{heal.restarted_ms:.0f} ms, healed {heal.healed_ms:.0f} ms",
                file=sys.stderr,
            )
            daemon.settled()
            # The next break must not count as a relapse of this healing.
            time.sleep(relapse_window + 0.5)
    except (OSError, RuntimeError, ValueError) as error:
        # TimeoutError is an OSError. Keep what this interval measured and
        # go on with the next one: a daemon in trouble would fail every
        # remaining repeat too.
        failure = f"repeat {number + 1} of {repeats}: {error!r}; rest skipped"
        series.failed.append(failure)
        print(f"  interval {interval:g} s: {failure}", file=sys.stderr)
    finally:
        daemon.stop()
    return series


def _s(ms: float) -> str:
    return f"{ms / 1000:.2f} s"


def _row(label: str, s: Series, kind: str | None = None) -> str:
    def cell(what: str, q: float, width: int) -> str:
        return f"{_s(s.stat(what, q, kind)):>{width}}"

    return (
        f"{label:<20}{len(s.values('healed_ms', kind)):>3}"
        + cell("detected_ms", 50, 14)
        + cell("restarted_ms", 50, 15)
        + cell("restarted_ms", 95, 9)
        + cell("healthy_ms", 50, 13)
        + cell("healed_ms", 50, 12)
        + cell("healed_ms", 95, 9)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 breaks each")
    parser.add_argument("--repeats", type=int, help="breaks per interval (10)")
    parser.add_argument(
        "--intervals", default="1,0.2", help="check intervals, s (1,0.2)"
    )
    parser.add_argument(
        "--kinds", default="error,hang", help="breaks, alternating"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    repeats = args.repeats or (4 if args.quick else 10)
    intervals = [float(x) for x in args.intervals.split(",") if x]
    kinds = [k for k in args.kinds.split(",") if k]
    rng = random.Random(0)
    raise_on_sigterm()

    results = []
    # The Janitor exits first: processes stop before their directory goes.
    with (
        tempfile.TemporaryDirectory(prefix="healing-bench-") as tmp,
        Janitor() as janitor,
    ):
        for interval in intervals:
            results.append(
                measure(
                    janitor,
                    Path(tmp),
                    interval,
                    kinds=kinds,
                    repeats=repeats,
                    rng=rng,
                )
            )

    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{load_average()}; http check timeout {CHECK_TIMEOUT * 1000:.0f} "
        f"ms, failure_threshold {FAILURE_THRESHOLD}, verify_settle 1 s; "
        f"breaks alternate {'/'.join(kinds)}; from the break (p95 by nearest "
        "rank: of fewer than 20 breaks, the slowest):"
    )
    print(
        f"{'check interval':<20}{'n':>3}{'detected p50':>14}{'restarted p50':>15}"
        f"{'p95':>9}{'healthy p50':>13}{'healed p50':>12}{'p95':>9}"
    )
    for s in results:
        print(_row(f"{s.interval:>6g} s x {FAILURE_THRESHOLD}", s))
        for kind in kinds:
            if s.values("healed_ms", kind):
                print(_row(f"{'':<6}{kind}", s, kind))
        missed = {k: v for k, v in s.missed().items() if v}
        if missed:
            print(
                f"{'':<6}missed by polling (left out): "
                + ", ".join(f"{k} {v}" for k, v in missed.items())
            )
    print(
        f"Kubernetes default (period {K8S_PERIOD:g} s x failureThreshold "
        f"{K8S_FAILURE_THRESHOLD}): restart ~{K8S_RESTART_S:g} s after the "
        "break (20-30 s), documented"
    )
    for s in results:
        restart = s.stat("restarted_ms", 95) / 1000
        healed = s.stat("healed_ms", 95) / 1000
        print(
            f"interval {s.interval:g} s: Kubernetes ~{K8S_RESTART_S:g} s / "
            f"our restart p95 {restart:.2f} s = {K8S_RESTART_S / restart:.1f}x; "
            f"/ our verified healing p95 {healed:.2f} s = "
            f"{K8S_RESTART_S / healed:.1f}x"
        )
        for failure in s.failed:
            print(f"WARNING interval {s.interval:g} s: {failure}")
    if args.json:
        with Path(args.json).open("w", encoding="utf-8") as out:
            json.dump(
                {
                    "kubernetes_restart_s": K8S_RESTART_S,
                    "series": [
                        {
                            **asdict(s),
                            "p50": s.stats(50),
                            "p95": s.stats(95),
                            "missed": s.missed(),
                        }
                        for s in results
                    ],
                },
                out,
                indent=2,
            )
    return 0 if all(not s.failed for s in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
