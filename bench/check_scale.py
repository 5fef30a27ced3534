"""Check scale: N HTTP targets, each checked every second, on one core.

    python bench/check_scale.py [--quick] [--repeat R] [--no-untuned]
        [--profile] [--loops uvloop,asyncio] [--json FILE]

For N = 100, 1000 and 5000 (``--quick``: 100 and 1000, shorter runs, one
repeat) the real objects run in a fresh worker process: one
BackgroundTaskManager, one shared HttpSession and N HttpChecks, each
registered with ``register_interval(f"check:{i}", check.check, 1.0,
initial_delay=i/N)``. Once the manager has started, the worker tunes the
garbage collector exactly as the daemon does after its start-up
(``selfhealing.daemon._tune_gc``: collect, ``gc.freeze()``,
``gc.set_threshold(50_000, 20, 100)``). After a 2 s warm-up the worker
measures a 10 s window: CPU time of the whole process (``time.process_time()``, as % of
one core and per check), RSS (and per target, over the RSS before the
checks were built), checks completed per second, the lateness of check
starts (the manager's own ``lateness(task_id)`` samples from the window,
all tasks together), and CPython's garbage-collector pauses.

Beside it, for N >= 1000, a raw aiohttp loop with no selfhealing at all
(one task per target sleeping to the same 1 s grid, one ClientSession,
``ClientTimeout(total=1)``), so the cost of our layer is visible; the
ratio pairs the two runs of one repeat. Also for N >= 1000, a comparison
row "selfhealing, gc untuned": our stack with CPython's default collector
settings (what the daemon did before ``_tune_gc``); ``--no-untuned``
skips it.

The targets are served by a raw asyncio HTTP/1.1 server on uvloop in
another process, listening on up to 1000 ports of 127.0.0.1 (target i
uses port i mod 1000, so up to 1000 targets keep their own connection);
it answers ``200 ok`` to ``GET /health/<i>``, keep-alive, counts them and
reports its own CPU time. The machine is shared: each row also shows the
busy cores of the whole machine during the window. Cases run on uvloop,
then on the default asyncio loop, repeated 3 times interleaved; the table
shows medians. ``--profile`` prints a cProfile of the first N = 1000
window. The 50 first checks are run once more after the window: "fail"
counts those that failed (and every failed request of the raw loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import math
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time

from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from _support import Janitor, load_average, percentile, raise_on_sigterm


MAX_PORTS = 1000
CLEANUP = 5.0  # seconds a worker may spend cancelling its tasks
RAW = "raw aiohttp"
OURS = "selfhealing"
#: The comparison row: our stack without the daemon's GC tuning.
UNTUNED = "selfhealing, gc untuned"
INTERVAL = 1.0
OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 2\r\n\r\nok"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


# ------------------------------------------------------------- the server


class _Counter:
    served = 0


class _HealthProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: 200 ok to GET /health/*, the count on /stats."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport.
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            request, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if request.startswith(b"GET /health/"):
                _Counter.served += 1
                self.transport.write(OK)
            elif request.startswith(b"GET /stats"):
                body = b"%d %f" % (_Counter.served, time.process_time())
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
            else:
                self.transport.write(NOT_FOUND)


async def _serve(ports: int) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    numbers = []
    for _ in range(ports):
        server = await loop.create_server(
            _HealthProtocol, "127.0.0.1", 0, backlog=1024
        )
        servers.append(server)
        numbers.append(server.sockets[0].getsockname()[1])
    print(json.dumps(numbers), flush=True)
    await asyncio.Event().wait()


# ------------------------------------------------------------- the worker


@dataclass
class Case:
    loop: str
    n: int
    mode: str  # OURS, UNTUNED or RAW
    window: float = 0.0
    completed: int = 0
    served: int = 0
    cpu: float = 0.0
    rss_mib: float = 0.0
    rss_base_mib: float = 0.0
    lateness_ms: tuple[float, float, float] = (math.nan,) * 3
    lateness_samples: int = 0
    check_ms_median: float = math.nan
    failures: int = 0
    gc_ms: float = 0.0  # total GC pause in the window
    gc_max_ms: float = 0.0
    gc_full: int = 0  # generation-2 collections in the window
    server_cpu: float = math.nan  # the test server's CPU seconds
    host_busy: float = math.nan  # busy cores of the machine, all processes

    @property
    def checks_per_s(self) -> float:
        return self.completed / self.window if self.window else math.nan

    @property
    def core_percent(self) -> float:
        return 100 * self.cpu / self.window if self.window else math.nan

    @property
    def kib_per_target(self) -> float:
        return (self.rss_mib - self.rss_base_mib) * 1024 / self.n

    @property
    def us_per_check(self) -> float:
        return 1e6 * self.cpu / self.completed if self.completed else math.nan


def _rss_mib() -> float:
    with Path("/proc/self/statm").open(encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def _served(port: int) -> tuple[int, float]:
    """Health requests answered so far and the server's CPU seconds."""
    try:
        async with asyncio.timeout(5):
            return await _ask_served(port)
    except (OSError, TimeoutError, ValueError, IndexError):
        return -1, math.nan


async def _ask_served(port: int) -> tuple[int, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        count, cpu = (await reader.readexactly(length)).split()
        return int(count), float(cpu)
    finally:
        writer.close()


def _host_busy() -> float:
    """Busy CPU seconds of the whole machine so far, all cores."""
    with Path("/proc/stat").open(encoding="ascii") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _urls(n: int, ports: list[int]) -> list[str]:
    return [
        f"http://127.0.0.1:{ports[i % len(ports)]}/health/{i}"
        for i in range(n)
    ]


def _lateness(case: Case, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    case.lateness_samples = len(ms)
    case.lateness_ms = (
        percentile(ms, 50),
        percentile(ms, 99),
        max(ms, default=math.nan),
    )


class _GcPauses:
    """Every garbage collection's pause: (start, ms, generation)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float, int]] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            ms = (time.perf_counter() - self._start) * 1000
            self.pauses.append((self._start, ms, info["generation"]))


_GC = _GcPauses()


async def _window(
    case: Case,
    ports: list[int],
    *,
    warmup: float,
    duration: float,
    completed: Callable[[], int],
    profile: cProfile.Profile | None,
) -> None:
    """Sleep through the warm-up, then measure one window."""
    await asyncio.sleep(warmup)
    served0, server0 = await _served(ports[0])
    done0 = completed()
    if profile is not None:
        profile.enable()
    host0 = _host_busy()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(duration)
    cpu1, t1 = time.process_time(), time.perf_counter()
    host1 = _host_busy()
    if profile is not None:
        profile.disable()
    case.window = t1 - t0
    inside = [(ms, gen) for at, ms, gen in _GC.pauses if t0 <= at < t1]
    case.gc_ms = sum(ms for ms, _ in inside)
    case.gc_max_ms = max((ms for ms, _ in inside), default=0.0)
    case.gc_full = sum(gen == 2 for _, gen in inside)
    case.cpu = cpu1 - cpu0
    case.completed = completed() - done0
    case.host_busy = (host1 - host0) / case.window
    served1, server1 = await _served(ports[0])
    case.served = served1 - served0 if min(served0, served1) >= 0 else -1
    case.server_cpu = server1 - server0
    case.rss_mib = _rss_mib()


async def _selfhealing(
    case: Case,
    ports: list[int],
    warmup: float,
    duration: float,
    profile: cProfile.Profile | None,
) -> None:
    from selfhealing.checks import HttpCheck, HttpSession  # noqa: PLC0415

    # Imported in both modes, so both start from the same heap and RSS.
    from selfhealing.daemon import _tune_gc  # noqa: PLC0415
    from selfhealing.tasks import BackgroundTaskManager  # noqa: PLC0415

    case.rss_base_mib = _rss_mib()
    n = case.n
    manager = BackgroundTaskManager()
    session = HttpSession()
    checks = [HttpCheck(url, session=session) for url in _urls(n, ports)]
    ids = [f"check:{i}" for i in range(n)]
    for i, check in enumerate(checks):
        manager.register_interval(
            ids[i], check.check, INTERVAL, initial_delay=i / n
        )

    def completed() -> int:
        tasks = manager.snapshot().tasks
        # runs counts starts; a run still going has not completed.
        return sum(t.runs - (t.state == "running") for t in tasks)

    await manager.start()
    if case.mode == OURS:
        _tune_gc()  # as the daemon does once its runtime has started
    try:
        seen: dict[str, int] = {}

        async def mark() -> None:
            await asyncio.sleep(warmup)
            for task_id in ids:
                seen[task_id] = len(manager.lateness(task_id))

        marker = asyncio.create_task(mark())
        await _window(
            case,
            ports,
            warmup=warmup,
            duration=duration,
            completed=completed,
            profile=profile,
        )
        await marker
        samples: list[float] = []
        for task_id in ids:
            # Fewer than LATENESS_SAMPLES so far: the deque never rotated.
            samples.extend(manager.lateness(task_id)[seen[task_id] :])
        _lateness(case, samples)
        snapshot = manager.snapshot().tasks
        durations = [t.last_duration for t in snapshot if t.last_duration]
        case.check_ms_median = 1000 * statistics.median(durations)
        results = await asyncio.gather(*(c.check() for c in checks[:50]))
        case.failures = sum(not r.ok for r in results)
        _report(case)
    finally:
        # Bounded: a worker that cannot clean up has still reported.
        await asyncio.wait(
            [asyncio.create_task(manager.shutdown())], timeout=CLEANUP
        )
        await asyncio.wait([asyncio.create_task(session.aclose())], timeout=1)


async def _raw(
    case: Case,
    ports: list[int],
    warmup: float,
    duration: float,
    profile: cProfile.Profile | None,
) -> None:
    import aiohttp  # noqa: PLC0415

    case.rss_base_mib = _rss_mib()
    n = case.n
    counts = [0]
    failures = [0]
    late: list[float] = []
    measuring = [False]

    async def target(
        session: aiohttp.ClientSession, url: str, origin: float
    ) -> None:
        # time.monotonic(), as the manager's SystemClock: uvloop's
        # loop.time() is cached per iteration, in whole milliseconds.
        tick = 0
        while True:
            due = origin + tick * INTERVAL
            await asyncio.sleep(max(due - time.monotonic(), 0.0))
            now = time.monotonic()
            tick += max(math.floor((now - due) / INTERVAL), 0) + 1
            if measuring[0]:
                late.append(now - due)
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        failures[0] += 1
            except (aiohttp.ClientError, TimeoutError):
                failures[0] += 1
            counts[0] += 1

    timeout = aiohttp.ClientTimeout(total=1.0)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout
    ) as session:
        start = time.monotonic()
        tasks = [
            asyncio.create_task(target(session, url, start + i / n))
            for i, url in enumerate(_urls(n, ports))
        ]

        async def mark() -> None:
            await asyncio.sleep(warmup)
            measuring[0] = True

        marker = asyncio.create_task(mark())
        try:
            await _window(
                case,
                ports,
                warmup=warmup,
                duration=duration,
                completed=lambda: counts[0],
                profile=profile,
            )
            measuring[0] = False
            await marker
            _lateness(case, late)
            case.failures = failures[0]
            _report(case)
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a worker that cannot clean up has still reported.
            await asyncio.wait(tasks, timeout=CLEANUP)


def _report(case: Case) -> None:
    """The worker's result: one JSON line, before any cleanup."""
    print(json.dumps(asdict(case)), flush=True)


def _worker(args: argparse.Namespace) -> int:
    ports = json.loads(args.ports)
    case = Case(args.loop, args.n, args.mode)
    profile = cProfile.Profile() if args.profile else None
    gc.callbacks.append(_GC)
    body = _raw if args.mode == RAW else _selfhealing
    coro = body(case, ports, args.warmup, args.duration, profile)
    _run(coro, args.loop)
    if profile is not None:
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out)
        stats.sort_stats("tottime").print_stats(30)
        print(out.getvalue(), file=sys.stderr)
    return 0


def _run(coro: Coroutine[Any, Any, None], loop: str) -> None:
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(coro)
    else:
        asyncio.run(coro)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --------------------------------------------------------------- the main


def _start_server(
    janitor: Janitor, ports: int
) -> tuple[subprocess.Popen[bytes], list[int]]:
    proc = janitor.start(
        [sys.executable, __file__, "--server", str(ports)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the test server did not start")
    return proc, json.loads(line)


def _measure(
    janitor: Janitor,
    ports: list[int],
    case: Case,
    *,
    warmup: float,
    duration: float,
    profile: bool,
) -> Case:
    argv = [
        sys.executable,
        __file__,
        "--worker",
        "--loop",
        case.loop,
        "--n",
        str(case.n),
        "--mode",
        case.mode,
        "--warmup",
        str(warmup),
        "--duration",
        str(duration),
        "--ports",
        json.dumps(ports),
    ]
    if profile:
        argv.append("--profile")
    proc = janitor.start(argv, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=warmup + duration + 90)
    except subprocess.TimeoutExpired:
        # It reports before cleaning up: keep the report, end the worker.
        janitor.stop(proc, grace=2)
        out, _ = proc.communicate()
        print(
            f"  (worker {case.mode} N={case.n} hung; killed)", file=sys.stderr
        )
    lines = out.splitlines()
    if not lines:
        raise RuntimeError(f"worker {case} failed ({proc.returncode})")
    data = json.loads(lines[0])
    data["lateness_ms"] = tuple(data["lateness_ms"])
    return Case(**data)


Key = tuple[str, int, str]


def _key(case: Case) -> Key:
    return (case.loop, case.n, case.mode)


def _median(cases: list[Case], value: Callable[[Case], float]) -> float:
    values = [value(c) for c in cases if not math.isnan(value(c))]
    return statistics.median(values) if values else math.nan


def _table(runs: dict[Key, list[Case]]) -> None:
    print(
        f"{'loop':<8}{'N':>5}  {'client':<25}{'checks/s':>9}{'CPU %':>7}"
        f"{'µs/chk':>8}{'RSS MiB':>8}{'KiB/tgt':>8}{'late p50':>10}"
        f"{'p99':>9}{'max':>9}{'GC ms/s':>9}{'GC max':>9}{'fail':>6}"
        f"{'srv %':>7}{'host %':>8}"
    )
    for (loop, n, mode), cases in runs.items():

        def med(
            value: Callable[[Case], float], of: list[Case] = cases
        ) -> float:
            return _median(of, value)

        print(
            f"{loop:<8}{n:>5}  {mode:<25}"
            f"{med(lambda c: c.checks_per_s):>9.0f}"
            f"{med(lambda c: c.core_percent):>7.1f}"
            f"{med(lambda c: c.us_per_check):>8.0f}"
            f"{med(lambda c: c.rss_mib):>8.1f}"
            f"{med(lambda c: c.kib_per_target):>8.1f}"
            f"{med(lambda c: c.lateness_ms[0]):>8.2f}ms"
            f"{med(lambda c: c.lateness_ms[1]):>7.2f}ms"
            f"{med(lambda c: c.lateness_ms[2]):>7.1f}ms"
            f"{med(lambda c: c.gc_ms / c.window):>9.1f}"
            f"{med(lambda c: c.gc_max_ms):>7.1f}ms"
            f"{sum(c.failures for c in cases):>6}"
            f"{med(lambda c: 100 * c.server_cpu / c.window):>7.0f}"
            f"{med(lambda c: 100 * c.host_busy):>8.0f}"
        )


def _verdicts(runs: dict[Key, list[Case]], loops: list[str]) -> None:
    for loop in loops:
        ours = runs.get((loop, 1000, OURS), [])
        raw = runs.get((loop, 1000, RAW), [])
        if not ours or not raw:
            continue
        # Ratios pair the runs of one repeat, measured back to back.
        extra = [
            o.us_per_check - r.us_per_check
            for o, r in zip(ours, raw, strict=True)
        ]
        ratio = [
            o.us_per_check / r.us_per_check
            for o, r in zip(ours, raw, strict=True)
        ]
        print(
            f"{loop}, N=1000: selfhealing "
            f"{_median(ours, lambda c: c.us_per_check):.0f} µs per check, "
            f"raw aiohttp {_median(raw, lambda c: c.us_per_check):.0f} µs: "
            f"{statistics.median(extra):+.0f} µs "
            f"({statistics.median(ratio):.2f}x; per repeat: "
            + ", ".join(f"{x:.2f}x" for x in ratio)
            + ")"
        )
        untuned = runs.get((loop, 1000, UNTUNED), [])
        if untuned:
            print(
                f"{loop}, N=1000: GC tuned as the daemon does / untuned: "
                f"start lateness p99 "
                f"{_median(ours, lambda c: c.lateness_ms[1]):.2f} / "
                f"{_median(untuned, lambda c: c.lateness_ms[1]):.2f} ms, max "
                f"{_median(ours, lambda c: c.lateness_ms[2]):.1f} / "
                f"{_median(untuned, lambda c: c.lateness_ms[2]):.1f} ms, "
                f"GC pause max {_median(ours, lambda c: c.gc_max_ms):.1f} / "
                f"{_median(untuned, lambda c: c.gc_max_ms):.1f} ms, CPU "
                f"{_median(ours, lambda c: c.core_percent):.1f} / "
                f"{_median(untuned, lambda c: c.core_percent):.1f} %"
            )
        cpu = _median(ours, lambda c: c.core_percent)
        late = _median(ours, lambda c: c.lateness_ms[1])
        print(
            f"{loop}, goals for 1000 targets: CPU < 25 % of a core: "
            f"{cpu:.1f} % {'met' if cpu < 25 else 'MISSED'}; "
            f"start lateness p99 < 5 ms: {late:.2f} ms "
            f"{'met' if late < 5 else 'MISSED'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=100, 1000")
    parser.add_argument(
        "--repeat", type=int, help="runs of each case, interleaved (3)"
    )
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--no-untuned",
        action="store_true",
        help="skip the comparison row without the daemon's GC tuning",
    )
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument(
        "--loops", default="uvloop,asyncio", help="uvloop,asyncio"
    )
    # Internal: the test server and the measuring worker.
    parser.add_argument("--server", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--worker", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument("--loop", default="uvloop", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _raise_fd_limit()
    if args.server:
        _run(_serve(args.server), "uvloop")
        return 0
    if args.worker:
        return _worker(args)

    raise_on_sigterm()
    sizes = [100, 1000] if args.quick else [100, 1000, 5000]
    warmup, duration = (1.0, 4.0) if args.quick else (2.0, 10.0)
    repeat = args.repeat or (1 if args.quick else 3)
    loops = [loop for loop in args.loops.split(",") if loop]
    runs: dict[Key, list[Case]] = {}
    with Janitor() as janitor:
        server, ports = _start_server(janitor, min(MAX_PORTS, max(sizes)))
        try:
            for rep in range(repeat):
                for loop in loops:
                    plan = []
                    for n in sizes:
                        plan.append(Case(loop, n, OURS))
                        if n >= 1000:
                            plan.append(Case(loop, n, RAW))
                        if n >= 1000 and not args.no_untuned:
                            plan.append(Case(loop, n, UNTUNED))
                    for case in plan:
                        profile = (
                            args.profile
                            and rep == 0
                            and case.n == 1000
                            and case.mode == OURS
                        )
                        print(
                            f"  [{rep + 1}/{repeat}] {case.loop} N={case.n} "
                            f"{case.mode}",
                            file=sys.stderr,
                        )
                        done = _measure(
                            janitor,
                            ports,
                            case,
                            warmup=warmup,
                            duration=duration,
                            profile=profile,
                        )
                        runs.setdefault(_key(case), []).append(done)
        finally:
            janitor.stop(server)

    print(
        f"Python {sys.version.split()[0]}, {len(ports)} server ports, "
        f"interval {INTERVAL:.0f} s, {warmup:.0f} s warm-up, "
        f"{duration:.0f} s window, medians of {repeat} run(s), "
        f"{os.cpu_count()} CPUs, {load_average()}\n"
        "(CPU % = of one core, whole measuring process; GC = CPython's "
        "collector pauses, ms per s of window;\n srv % = the test server's "
        "CPU; host % = every process on the machine, 100 per busy core)"
    )
    _table(runs)
    _verdicts(runs, loops)
    for cases in runs.values():
        for c in cases:
            if c.failures or c.served < 0.95 * c.completed:
                print(
                    f"WARNING {c.loop} N={c.n} {c.mode}: {c.failures} "
                    f"failed, server answered {c.served} of {c.completed}"
                )
    if args.json:
        with Path(args.json).open("w", encoding="utf-8") as out:
            json.dump(
                [
                    {
                        **asdict(c),
                        "checks_per_s": c.checks_per_s,
                        "core_percent": c.core_percent,
                        "us_per_check": c.us_per_check,
                        "kib_per_target": c.kib_per_target,
                    }
                    for cases in runs.values()
                    for c in cases
                ],
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
