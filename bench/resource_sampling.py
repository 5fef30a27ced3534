"""Resource sampling cost: how much of one core ResourceMonitor takes.

    python bench/resource_sampling.py [--processes 50] [--children 1]
        [--samples 20] [--repeats 7] [--interval 5] [--json FILE] [--quick]

Starts N real supervised programs, each leading its own session (so its
group can be killed whole): ``sh -c 'sleep 1000 & ... wait'``, a shell
with ``--children`` sleeping children, so every pass walks real process
trees. A ResourceMonitor (the real one, on the system clock, with ``/``
and the temp dir as disk paths) samples them: every tree, the daemon
itself (this process) and the host.

The measurement: after two warm-up passes, time ``--samples`` back-to-back
``sample()`` calls with ``time.process_time()`` (CPU seconds of this
process), divide by the count, and repeat ``--repeats`` times; the median
CPU seconds per pass, over the sampling interval, is the share of one core
the monitor costs at one pass per interval. The same is measured with no
supervised processes (host and daemon only) as a baseline. The goal is
under 2 % of one core for 50 processes every 5 s.

Everything started is killed at the end (SIGKILL to each process group),
also on Ctrl+C, SIGTERM or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import psutil  # type: ignore[import-untyped, unused-ignore]

from selfhealing.clock import SystemClock
from selfhealing.resources import ResourceMonitor


GOAL_PERCENT = 2.0
READY_TIMEOUT = 20.0


@dataclass
class Supervised:
    """What the monitor reads of a supervised process."""

    name: str
    pid: int | None


@dataclass
class Measurement:
    """The cost of one configuration, medians over the repeats."""

    processes: int
    tree_processes: int
    series: int
    cpu_per_sample_ms: float
    wall_per_sample_ms: float
    percent_of_one_core: float
    repeats_cpu_ms: list[float]


def start_trees(count: int, children: int) -> list[subprocess.Popen[bytes]]:
    """Start *count* shells, each with *children* sleeping children."""
    script = (
        "for i in "
        + " ".join(["x"] * children)
        + "; do sleep 1000 & done; wait"
    )
    started: list[subprocess.Popen[bytes]] = []
    for _ in range(count):
        started.append(
            subprocess.Popen(
                ["sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
    return started


def wait_ready(roots: list[subprocess.Popen[bytes]], children: int) -> None:
    """Wait until every root has all its children."""
    deadline = time.monotonic() + READY_TIMEOUT
    pending = {root.pid for root in roots}
    while pending:
        for pid in list(pending):
            with contextlib.suppress(psutil.NoSuchProcess):
                if len(psutil.Process(pid).children()) >= children:
                    pending.discard(pid)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} trees did not start")
        time.sleep(0.05)


def kill_all(roots: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL every group we started and reap the roots."""
    for root in roots:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(root.pid, signal.SIGKILL)
    for root in roots:
        with contextlib.suppress(subprocess.TimeoutExpired):
            root.wait(timeout=10)


def measure(
    supervised: list[Supervised],
    *,
    samples: int,
    repeats: int,
    interval: float,
    disks: list[str],
) -> Measurement:
    """Median CPU and wall time of one sample() over the repeats."""
    monitor = ResourceMonitor(
        clock=SystemClock(),
        interval=interval,
        disk_paths=disks,
        processes=lambda: supervised,
    )
    monitor.sample()
    monitor.sample()
    cpu_runs: list[float] = []
    wall_runs: list[float] = []
    for _ in range(repeats):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(samples):
            monitor.sample()
        cpu_runs.append((time.process_time() - cpu0) / samples)
        wall_runs.append((time.perf_counter() - wall0) / samples)
    cpu = statistics.median(cpu_runs)
    tree = sum(
        int(monitor.series(f"process:{s.name}:children").values()[-1]) + 1
        for s in supervised
    )
    return Measurement(
        processes=len(supervised),
        tree_processes=tree,
        series=len(monitor.names()),
        cpu_per_sample_ms=cpu * 1000,
        wall_per_sample_ms=statistics.median(wall_runs) * 1000,
        percent_of_one_core=cpu / interval * 100,
        repeats_cpu_ms=[round(run * 1000, 3) for run in cpu_runs],
    )


def _camel(record: dict[str, object]) -> dict[str, object]:
    """The JSON shape: camelCase keys, as the API uses."""
    camel = {}
    for key, value in record.items():
        head, *rest = key.split("_")
        camel[head + "".join(word.title() for word in rest)] = value
    return camel


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--children", type=int, default=1)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--quick", action="store_true", help="5 samples x 3 repeats"
    )
    args = parser.parse_args()
    if args.quick:
        args.samples, args.repeats = 5, 3
    signal.signal(signal.SIGTERM, _terminate)
    disks = ["/", tempfile.gettempdir()]
    roots: list[subprocess.Popen[bytes]] = []
    try:
        roots = start_trees(args.processes, args.children)
        wait_ready(roots, args.children)
        supervised = [
            Supervised(f"p{index:03d}", root.pid)
            for index, root in enumerate(roots)
        ]
        run = functools.partial(
            measure,
            samples=args.samples,
            repeats=args.repeats,
            interval=args.interval,
            disks=disks,
        )
        baseline = run([])
        loaded = run(supervised)
        system_processes = len(psutil.pids())
    finally:
        kill_all(roots)
    report = {
        "benchmark": "resource_sampling",
        "interval": args.interval,
        "samples": args.samples,
        "repeats": args.repeats,
        "childrenEach": args.children,
        "disks": disks,
        "systemProcesses": system_processes,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "psutil": psutil.__version__,
        "platform": platform.platform(),
        "goalPercent": GOAL_PERCENT,
        "baseline": _camel(asdict(baseline)),
        "loaded": _camel(asdict(loaded)),
        "ok": loaded.percent_of_one_core < GOAL_PERCENT,
    }
    print(
        f"host+daemon only: {baseline.cpu_per_sample_ms:.2f} ms CPU a pass "
        f"({baseline.series} series) = "
        f"{baseline.percent_of_one_core:.3f}% of one core every "
        f"{args.interval:g} s"
    )
    print(
        f"{loaded.processes} processes ({loaded.tree_processes} in their "
        f"trees, {system_processes} on the host): "
        f"{loaded.cpu_per_sample_ms:.2f} ms CPU a pass "
        f"(wall {loaded.wall_per_sample_ms:.2f} ms, {loaded.series} series)"
        f" = {loaded.percent_of_one_core:.3f}% of one core every "
        f"{args.interval:g} s (goal < {GOAL_PERCENT:g}%)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
