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
import statistics
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
        return [
            getattr(h, what)
            for h in self.heals
            if kind is None or h.kind == kind
        ]

    def stat(self, what: str, q: float, kind: str | None = None) -> float:
        return percentile(self.values(what, kind), q)


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
                timeout = "500ms"
                failure_threshold = 3

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
    series = Series(interval, 0.5, 3)
    workdir = root / f"interval-{interval:g}"
    workdir.mkdir()
    daemon = Daemon(janitor, workdir, interval)
    daemon.start()
    relapse_window = 10 * interval  # the daemon's default
    try:
        daemon.settled()
        for number in range(repeats):
            kind = kinds[number % len(kinds)]
            time.sleep(rng.uniform(0, interval))
            try:
                heal = heal_once(daemon, kind)
            except TimeoutError as error:
                series.failed.append(str(error))
                print(f"  {error}", file=sys.stderr)
                break
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
    finally:
        daemon.stop()
    return series


def _s(ms: float) -> str:
    return f"{ms / 1000:.2f} s"


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
    with (
        Janitor() as janitor,
        tempfile.TemporaryDirectory(prefix="healing-bench-") as tmp,
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
        f"{load_average()}; http check timeout 500 ms, failure_threshold 3, "
        f"verify_settle 1 s; breaks alternate {'/'.join(kinds)}; from the "
        "break:"
    )
    print(
        f"{'check interval':<20}{'n':>3}{'detected p50':>14}{'restarted p50':>15}"
        f"{'p95':>9}{'healthy p50':>13}{'healed p50':>12}{'p95':>9}"
    )
    for s in results:
        print(
            f"{s.interval:>6g} s x 3{'':<10}{len(s.heals):>3}"
            f"{_s(s.stat('detected_ms', 50)):>14}"
            f"{_s(s.stat('restarted_ms', 50)):>15}"
            f"{_s(s.stat('restarted_ms', 95)):>9}"
            f"{_s(s.stat('healthy_ms', 50)):>13}"
            f"{_s(s.stat('healed_ms', 50)):>12}"
            f"{_s(s.stat('healed_ms', 95)):>9}"
        )
        for kind in kinds:
            values = s.values("healed_ms", kind)
            if values:
                print(
                    f"{'':<6}{kind:<14}{len(values):>3}"
                    f"{_s(s.stat('detected_ms', 50, kind)):>14}"
                    f"{_s(s.stat('restarted_ms', 50, kind)):>15}"
                    f"{_s(s.stat('restarted_ms', 95, kind)):>9}"
                    f"{_s(s.stat('healthy_ms', 50, kind)):>13}"
                    f"{_s(s.stat('healed_ms', 50, kind)):>12}"
                    f"{_s(s.stat('healed_ms', 95, kind)):>9}"
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
                            "p50": {
                                what: s.stat(what, 50)
                                for what in (
                                    "detected_ms",
                                    "restarted_ms",
                                    "healthy_ms",
                                    "healed_ms",
                                )
                            },
                            "p95": {
                                what: s.stat(what, 95)
                                for what in (
                                    "detected_ms",
                                    "restarted_ms",
                                    "healthy_ms",
                                    "healed_ms",
                                )
                            },
                            "medians_by_kind": {
                                kind: statistics.median(
                                    s.values("healed_ms", kind)
                                )
                                for kind in kinds
                                if s.values("healed_ms", kind)
                            },
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
