"""Breaker overhead: our CircuitBreaker beside pybreaker, circuitbreaker,
aiobreaker and purgatory, each path as a ratio to a bare call of one run.

    python bench/breaker_overhead.py [--quick] [--json FILE]

What is measured, all in this one process:

* ns per guarded call on four paths: closed success (sync), counted
  failure, rejection while OPEN, closed success (async), for every
  library in each of its idiomatic forms (``call()``, decorator, context
  manager), beside the bare call (or bare raise + catch) of the same run.
  Rounds are interleaved (every variant once per round, timeit's empty
  loop subtracted) and each figure is the median over the rounds, so a
  noisy neighbour moves all variants alike and the ratios hold;
* bytes per idle breaker (tracemalloc, 10,000 breakers made the way each
  library makes them) and bytes each rejection leaves behind;
* half-open admission: a breaker tripped OPEN, its recovery timeout
  elapsed, then 20 callers released at once (threads for the sync forms,
  asyncio tasks for the async ones) through a guarded function that takes
  100 ms. Counted: callers that entered the guarded function before the
  first trial's verdict (while the breaker was half-open), those that ran
  at all, and those rejected;
* effective parallelism: 4 threads each calling, through one breaker, a
  guarded function that sleeps 1 ms (``time.sleep`` releases the GIL, so
  a breaker that holds its lock across the call serializes them).
  Throughput as a multiple of one bare thread, and relative to 4 bare
  threads.

Goals (ratios of ns per guarded call, closed success, sync; our ``call()``
against each peer's fastest form): >= 8x faster than pybreaker, >= 3x
faster than the fastest peer; exactly ``half_open_max_calls`` (1) trial
admitted while half-open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import timeit
import tracemalloc

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from selfhealing import CircuitBreaker, CircuitOpenError


OURS = "selfhealing"
PEERS = ("pybreaker", "circuitbreaker", "aiobreaker", "purgatory")
CLOSED = "closed success (sync)"
FAILURE = "counted failure (sync)"
REJECT = "open rejection (sync)"
ASYNC = "closed success (async)"
PATHS = (CLOSED, FAILURE, REJECT, ASYNC)
NEVER = 10**9  # a failure threshold that is never reached
LONG = 3600.0  # a recovery timeout that never elapses during a run
CALLERS = 20
TRIAL_SECONDS = 0.1
THREADS = 4
WORK_SECONDS = 0.001
GOAL_VS_PYBREAKER = 8.0
GOAL_VS_FASTEST = 3.0
GOAL_BYTES = 300


class Boom(Exception):
    """The failure the guarded function raises."""


def ok() -> int:
    return 1


def boom() -> None:
    raise Boom


async def aok() -> int:
    return 1


async def aboom() -> None:
    raise Boom


# ------------------------------------------------------------ the contenders


class Library:
    """One breaker library: how to make, trip and call its breakers."""

    name = "?"
    #: The sync forms: name -> one guarded call of ``fn``, where ``b`` is
    #: the breaker and ``f`` the decorated ``fn``.
    forms: ClassVar[dict[str, str]] = {}
    #: The async forms, the same way (``fn`` is a coroutine function).
    async_forms: ClassVar[dict[str, str]] = {}
    open_error: type[BaseException] = Exception

    @property
    def version(self) -> str:
        return importlib.metadata.version(self.name)

    def new(self, name: str, *, threshold: int, recovery: float) -> Any:
        raise NotImplementedError

    def decorate(self, breaker: Any, fn: Callable[..., Any]) -> Any:
        return breaker(fn)

    def trip(self, breaker: Any) -> None:
        """One failure through a threshold-1 breaker: OPEN now."""
        with contextlib.suppress(Exception):
            self.decorate(breaker, boom)()

    async def atrip(self, breaker: Any) -> None:
        with contextlib.suppress(Exception):
            await self.decorate(breaker, aboom)()

    async def anew(self, name: str, *, threshold: int, recovery: float) -> Any:
        return self.new(name, threshold=threshold, recovery=recovery)

    def rejection_setup(self) -> str:
        """Statement run before each timed loop of rejections."""
        return "pass"


class Ours(Library):
    name = OURS
    forms: ClassVar[dict[str, str]] = {
        "call()": "b.call(fn)",
        "decorator": "f()",
        "with breaker": "with b:\n    fn()",
        "acquire()": (
            "p = b.acquire()\ntry:\n    fn()\nexcept Exception as e:\n"
            "    p.failure(e)\n    raise\nelse:\n    p.success()"
        ),
    }
    async_forms: ClassVar[dict[str, str]] = {
        "call_async()": "await b.call_async(fn)",
        "decorator": "await f()",
        "async with": "async with b:\n    await fn()",
    }
    open_error = CircuitOpenError

    def new(self, name: str, *, threshold: int, recovery: float) -> Any:
        return CircuitBreaker(
            name, failure_threshold=threshold, recovery_timeout=recovery
        )


class PyBreaker(Library):
    name = "pybreaker"
    forms: ClassVar[dict[str, str]] = {
        "call()": "b.call(fn)",
        "decorator": "f()",
    }
    async_forms: ClassVar[dict[str, str]] = {}  # only Tornado coroutines

    def __init__(self) -> None:
        self.mod = importlib.import_module("pybreaker")
        self.open_error = self.mod.CircuitBreakerError

    def new(self, name: str, *, threshold: int, recovery: float) -> Any:
        return self.mod.CircuitBreaker(
            fail_max=threshold, reset_timeout=recovery, name=name
        )


class CircuitBreakerLib(Library):
    name = "circuitbreaker"
    # Its .call(f) and its ``with`` block run even while OPEN (neither
    # checks the state): the decorator is the only form that guards.
    forms: ClassVar[dict[str, str]] = {"decorator": "f()"}
    async_forms: ClassVar[dict[str, str]] = {"decorator": "await f()"}

    def __init__(self) -> None:
        self.mod = importlib.import_module("circuitbreaker")
        self.open_error = self.mod.CircuitBreakerError

    def new(self, name: str, *, threshold: int, recovery: float) -> Any:
        return self.mod.CircuitBreaker(
            failure_threshold=threshold, recovery_timeout=recovery, name=name
        )


class AioBreaker(Library):
    name = "aiobreaker"
    forms: ClassVar[dict[str, str]] = {
        "call()": "b.call(fn)",
        "decorator": "f()",
    }
    async_forms: ClassVar[dict[str, str]] = {
        "call_async()": "await b.call_async(fn)",
        "decorator": "await f()",
    }

    def __init__(self) -> None:
        self.mod = importlib.import_module("aiobreaker")
        self.open_error = self.mod.CircuitBreakerError

    def new(self, name: str, *, threshold: int, recovery: float) -> Any:
        return self.mod.CircuitBreaker(
            fail_max=threshold,
            timeout_duration=timedelta(seconds=recovery),
            name=name,
        )

    def decorate(self, breaker: Any, fn: Callable[..., Any]) -> Any:
        return breaker()(fn)


class Purgatory(Library):
    """purgatory: breakers live in a factory's repository, by name.

    The idiom is the factory's decorator, which looks the breaker up on
    every call; ``get_breaker()`` once and ``with`` it (a held context
    manager) skips that lookup.
    """

    name = "purgatory"
    forms: ClassVar[dict[str, str]] = {
        "factory decorator": "f()",
        "held with": "with b:\n    fn()",
    }
    async_forms: ClassVar[dict[str, str]] = {
        "factory decorator": "await f()",
        "held async with": "async with b:\n    await fn()",
    }

    def __init__(self) -> None:
        self.mod = importlib.import_module("purgatory")
        self.open_error = importlib.import_module(
            "purgatory.domain.model"
        ).OpenedState
        self.sync = self.mod.SyncCircuitBreakerFactory()
        self.aio = self.mod.AsyncCircuitBreakerFactory()
        self.async_type = importlib.import_module(
            "purgatory.service._async.circuitbreaker"
        ).AsyncCircuitBreaker

    def new(self, name: str, *, threshold: int, recovery: float) -> Any:
        return self.sync.get_breaker(name, threshold=threshold, ttl=recovery)

    async def anew(self, name: str, *, threshold: int, recovery: float) -> Any:
        return await self.aio.get_breaker(
            name, threshold=threshold, ttl=recovery
        )

    def decorate(self, breaker: Any, fn: Callable[..., Any]) -> Any:
        context = breaker.context
        factory = (
            self.aio if isinstance(breaker, self.async_type) else self.sync
        )
        return factory(
            context.name, threshold=context.threshold, ttl=context.ttl
        )(fn)

    def rejection_setup(self) -> str:
        # OPEN raises the same exception object every time, and each raise
        # chains a new traceback onto it (with the frames it holds): clear
        # it before each timed loop so memory stays bounded.
        return "b.context._state.__traceback__ = None"


def libraries() -> tuple[list[Library], list[str]]:
    """Every library that imports here, and why the others are missing."""
    found: list[Library] = [Ours()]
    missing = []
    for make in (PyBreaker, CircuitBreakerLib, AioBreaker, Purgatory):
        try:
            found.append(make())
        except ImportError as error:
            missing.append(f"{make.name}: not installed ({error})")
    return found, missing


# -------------------------------------------------------------- ns per call


@dataclass
class Row:
    library: str
    form: str
    ns: float = math.nan
    rounds: list[float] = field(default_factory=list)


@dataclass
class PathResult:
    path: str
    bare_ns: float
    rows: list[Row]


BARE = {
    CLOSED: "ok()",
    FAILURE: "try:\n    boom()\nexcept Exception:\n    pass",
    REJECT: "try:\n    boom()\nexcept Exception:\n    pass",
    ASYNC: "await aok()",
}


def _guarded(path: str, body: str) -> str:
    if path in {FAILURE, REJECT}:
        body = "\n".join("    " + line for line in body.splitlines())
        return f"try:\n{body}\nexcept Exception:\n    pass"
    return body


@dataclass
class _Variant:
    library: str
    form: str
    stmt: str
    env: dict[str, Any]
    setup: str = "pass"


def _sync_variants(libs: list[Library], path: str) -> list[_Variant]:
    variants = []
    for lib in libs:
        fn = boom if path == FAILURE else ok
        threshold = 1 if path == REJECT else NEVER
        breaker = lib.new(
            f"{lib.name}-{path}", threshold=threshold, recovery=LONG
        )
        if path == REJECT:
            lib.trip(breaker)
        env = {
            "b": breaker,
            "f": lib.decorate(breaker, fn),
            "fn": fn,
            "ok": ok,
            "boom": boom,
        }
        setup = lib.rejection_setup() if path == REJECT else "pass"
        for form, body in lib.forms.items():
            _verify(lib, path, body, env)
            variants.append(
                _Variant(
                    lib.name, form, _guarded(path, body), dict(env), setup
                )
            )
    return variants


def _verify(lib: Library, path: str, body: str, env: dict[str, Any]) -> None:
    """One call, checked: each variant really takes the path it is timed on."""
    ran = []

    def spy() -> int:
        ran.append(1)
        if path == FAILURE:
            raise Boom
        return 1

    probe = {**env, "fn": spy}
    if "f()" in body:
        probe["f"] = lib.decorate(env["b"], spy)
    error: BaseException | None = None
    try:
        exec(body, probe)  # noqa: S102 (our own statements)
    except Exception as exc:
        error = exc
    if path == CLOSED:
        good = ran == [1] and error is None
    elif path == FAILURE:
        good = ran == [1] and isinstance(error, Boom)
    else:
        good = not ran and isinstance(error, lib.open_error)
        with contextlib.suppress(AttributeError):
            env["b"].context._state.__traceback__ = None
    if not good:
        raise RuntimeError(
            f"{lib.name} {body!r} on {path}: ran {len(ran)}, raised {error!r}"
        )


def _time_sync(
    variants: list[_Variant], bare: str, number: int, repeat: int
) -> tuple[float, list[Row]]:
    rows = [Row(v.library, v.form) for v in variants]
    bare_runs: list[float] = []
    env = {"ok": ok, "boom": boom}
    for _ in range(repeat):
        empty = timeit.Timer("pass", globals=env).timeit(number)
        bare_runs.append(
            (timeit.Timer(bare, globals=env).timeit(number) - empty) / number
        )
        for variant, row in zip(variants, rows, strict=True):
            timer = timeit.Timer(
                variant.stmt, variant.setup, globals=variant.env
            )
            row.rounds.append((timer.timeit(number) - empty) / number * 1e9)
    for row in rows:
        row.ns = statistics.median(row.rounds)
    return statistics.median(bare_runs) * 1e9, rows


async def _async_variants(libs: list[Library]) -> list[_Variant]:
    variants = []
    for lib in libs:
        breaker = await lib.anew(
            f"{lib.name}-async", threshold=NEVER, recovery=LONG
        )
        env = {"b": breaker, "f": lib.decorate(breaker, aok), "fn": aok}
        for form, body in lib.async_forms.items():
            variants.append(_Variant(lib.name, form, body, env))
    return variants


def _async_loop(
    stmt: str, env: dict[str, Any]
) -> Callable[[int], Awaitable[None]]:
    """``async def run(n)`` doing *stmt* n times, compiled in *env*."""
    body = "\n".join("        " + line for line in stmt.splitlines())
    source = f"async def run(n):\n    for _ in range(n):\n{body}\n"
    namespace = dict(env)
    exec(source, namespace)  # noqa: S102 (our own statements)
    return namespace["run"]  # type: ignore[no-any-return]


def _time_async(
    libs: list[Library], number: int, repeat: int
) -> tuple[float, list[Row]]:
    loop = asyncio.new_event_loop()
    try:
        variants = loop.run_until_complete(_async_variants(libs))
        rows = [Row(v.library, v.form) for v in variants]
        runners = [_async_loop(v.stmt, v.env) for v in variants]
        for runner in runners:  # each form works, once
            loop.run_until_complete(runner(1))
        base = {"aok": aok}
        empty = _async_loop("pass", base)
        bare = _async_loop(BARE[ASYNC], base)

        def timed(run: Callable[[int], Awaitable[None]]) -> float:
            start = time.perf_counter()
            loop.run_until_complete(run(number))  # type: ignore[arg-type]
            return time.perf_counter() - start

        bare_runs = []
        for _ in range(repeat):
            zero = timed(empty)
            bare_runs.append((timed(bare) - zero) / number)
            for runner, row in zip(runners, rows, strict=True):
                row.rounds.append((timed(runner) - zero) / number * 1e9)
        for row in rows:
            row.ns = statistics.median(row.rounds)
    finally:
        loop.close()
    return statistics.median(bare_runs) * 1e9, rows


# ------------------------------------------------------------------ memory


def bytes_per_breaker(lib: Library, count: int = 10_000) -> float:
    names = [f"{lib.name}-mem-{i}" for i in range(count)]
    keep: list[Any] = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for name in names:
        keep.append(lib.new(name, threshold=5, recovery=60.0))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # The list holding them costs 8 bytes a slot: not the breaker's.
    return grown / count - 8


def bytes_per_rejection(lib: Library, count: int = 2_000) -> float:
    """Bytes still held after *count* rejections (caught and dropped)."""
    breaker = lib.new(f"{lib.name}-leak", threshold=1, recovery=LONG)
    lib.trip(breaker)
    guarded = lib.decorate(breaker, ok)
    for _ in range(10):
        with contextlib.suppress(Exception):
            guarded()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(count):
        with contextlib.suppress(Exception):
            guarded()
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    with contextlib.suppress(AttributeError):
        breaker.context._state.__traceback__ = None
    return max(grown / count, 0.0)


# --------------------------------------------------------------- half-open


class _Trial:
    """The guarded function of the half-open test: who ran, and when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entered = 0
        self.before_verdict = 0
        self.verdict = False
        self.arrived_after_verdict = 0

    def arrive(self) -> None:
        if self.verdict:
            self.arrived_after_verdict += 1

    def enter(self) -> None:
        with self.lock:
            self.entered += 1
            if not self.verdict:
                self.before_verdict += 1

    def sync(self) -> int:
        self.enter()
        time.sleep(TRIAL_SECONDS)
        self.verdict = True
        return 1

    async def aio(self) -> int:
        self.enter()
        await asyncio.sleep(TRIAL_SECONDS)
        self.verdict = True
        return 1


@dataclass
class Admission:
    library: str
    form: str
    mode: str  # "threads" or "tasks"
    admitted: list[int] = field(default_factory=list)  # while half-open
    ran: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    late: int = 0  # callers that arrived after the verdict (should be 0)
    errors: int = 0  # callers that got another exception


HALF_OPEN_SYNC = {
    OURS: "call()",
    "pybreaker": "call()",
    "circuitbreaker": "decorator",
    "aiobreaker": "call()",
    "purgatory": "factory decorator",
}
HALF_OPEN_ASYNC = {
    OURS: "call_async()",
    "circuitbreaker": "decorator",
    "aiobreaker": "call_async()",
    "purgatory": "factory decorator",
}
RECOVERY = 0.2


def _sync_caller(lib: Library, form: str, breaker: Any, fn: Any) -> Any:
    if form == "call()":
        return lambda: breaker.call(fn)
    return lib.decorate(breaker, fn)


def half_open_threads(lib: Library, form: str, runs: int) -> Admission:
    result = Admission(lib.name, form, "threads")
    for run in range(runs):
        breaker = lib.new(
            f"{lib.name}-half-{run}", threshold=1, recovery=RECOVERY
        )
        lib.trip(breaker)
        trial = _Trial()
        call = _sync_caller(lib, form, breaker, trial.sync)
        time.sleep(RECOVERY * 1.5)
        barrier = threading.Barrier(CALLERS)
        rejected = [0]
        errors = [0]

        def caller(
            call: Any = call,
            trial: _Trial = trial,
            barrier: threading.Barrier = barrier,
            rejected: list[int] = rejected,
            errors: list[int] = errors,
        ) -> None:
            barrier.wait()
            trial.arrive()
            try:
                call()
            except lib.open_error:
                rejected[0] += 1
            except Exception:
                errors[0] += 1

        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        result.admitted.append(trial.before_verdict)
        result.ran.append(trial.entered)
        result.rejected.append(rejected[0])
        result.errors += errors[0]
        result.late += trial.arrived_after_verdict
    return result


async def _half_open_tasks_once(
    lib: Library, form: str, run: int
) -> tuple[int, int, int, int, int]:
    breaker = await lib.anew(
        f"{lib.name}-ahalf-{run}", threshold=1, recovery=RECOVERY
    )
    await lib.atrip(breaker)
    trial = _Trial()
    if form == "call_async()":

        async def call() -> Any:
            return await breaker.call_async(trial.aio)

    else:
        call = lib.decorate(breaker, trial.aio)
    await asyncio.sleep(RECOVERY * 1.5)
    go = asyncio.Event()
    rejected = errors = 0

    async def caller() -> None:
        nonlocal rejected, errors
        await go.wait()
        trial.arrive()
        try:
            await call()
        except lib.open_error:
            rejected += 1
        except Exception:
            errors += 1

    tasks = [asyncio.create_task(caller()) for _ in range(CALLERS)]
    await asyncio.sleep(0)
    go.set()
    await asyncio.gather(*tasks)
    return (
        trial.before_verdict,
        trial.entered,
        rejected,
        trial.arrived_after_verdict,
        errors,
    )


def half_open_tasks(lib: Library, form: str, runs: int) -> Admission:
    result = Admission(lib.name, form, "tasks")
    for run in range(runs):
        admitted, ran, rejected, late, errors = asyncio.run(
            _half_open_tasks_once(lib, form, run)
        )
        result.errors += errors
        result.admitted.append(admitted)
        result.ran.append(ran)
        result.rejected.append(rejected)
        result.late += late
    return result


# ------------------------------------------------------------- parallelism


def work() -> None:
    time.sleep(WORK_SECONDS)


@dataclass
class Parallel:
    library: str
    form: str
    threads: int
    calls_per_s: list[float] = field(default_factory=list)
    parallelism: float = math.nan  # x one bare thread
    of_bare: float = math.nan  # / 4 bare threads


def _throughput(
    call: Callable[[], Any], threads: int, seconds: float
) -> float:
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    stop = [math.inf]

    def worker(index: int) -> None:
        barrier.wait()
        n = 0
        deadline = stop[0]
        while time.perf_counter() < deadline:
            call()
            n += 1
        counts[index] = n

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start = time.perf_counter()
    stop[0] = start + seconds
    barrier.wait()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def parallelism(
    libs: list[Library], seconds: float, rounds: int
) -> list[Parallel]:
    cases: list[tuple[Parallel, Callable[[], Any]]] = [
        (Parallel("bare", "", 1), work),
        (Parallel("bare", "", THREADS), work),
    ]
    for lib in libs:
        form = HALF_OPEN_SYNC[lib.name]
        breaker = lib.new(f"{lib.name}-par", threshold=5, recovery=60.0)
        cases.append(
            (
                Parallel(lib.name, form, THREADS),
                _sync_caller(lib, form, breaker, work),
            )
        )
    for _ in range(rounds):
        for case, call in cases:
            case.calls_per_s.append(_throughput(call, case.threads, seconds))
    one = statistics.median(cases[0][0].calls_per_s)
    four = statistics.median(cases[1][0].calls_per_s)
    for case, _ in cases:
        rate = statistics.median(case.calls_per_s)
        case.parallelism = rate / one
        case.of_bare = rate / four
    return [case for case, _ in cases]


# -------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": model,
        "load": os.getloadavg(),
    }


def _fastest(rows: list[Row], library: str | None = None) -> Row | None:
    pool = [
        r
        for r in rows
        if (r.library == library if library else r.library != OURS)
    ]
    return min(pool, key=lambda r: r.ns, default=None)


def _ours(rows: list[Row], form: str) -> Row:
    return next(r for r in rows if r.library == OURS and r.form == form)


def goals(
    paths: dict[str, PathResult], admissions: list[Admission]
) -> list[dict[str, Any]]:
    rows = paths[CLOSED].rows
    ours = _ours(rows, "call()")
    found = []
    pyb = _fastest(rows, "pybreaker")
    if pyb is not None:
        ratio = pyb.ns / ours.ns
        found.append(
            {
                "goal": f"closed path >= {GOAL_VS_PYBREAKER:g}x faster than pybreaker",
                "measured": f"{ratio:.1f}x (pybreaker {pyb.form} {pyb.ns:.0f} ns, ours call() {ours.ns:.0f} ns)",
                "ratio": ratio,
                "met": ratio >= GOAL_VS_PYBREAKER,
            }
        )
    fastest = _fastest(rows)
    if fastest is not None:
        ratio = fastest.ns / ours.ns
        found.append(
            {
                "goal": f"closed path >= {GOAL_VS_FASTEST:g}x faster than the fastest peer",
                "measured": f"{ratio:.1f}x (fastest peer: {fastest.library} {fastest.form} {fastest.ns:.0f} ns)",
                "ratio": ratio,
                "met": ratio >= GOAL_VS_FASTEST,
            }
        )
    mine = [a for a in admissions if a.library == OURS]
    peers = [a for a in admissions if a.library != OURS]
    exact = all(set(a.admitted) == {1} for a in mine)
    found.append(
        {
            "goal": "half-open admits exactly half_open_max_calls (1) of 20",
            "measured": "; ".join(
                f"{a.library} {a.mode}: {statistics.median(a.admitted):g}"
                for a in mine + peers
            ),
            "met": exact,
        }
    )
    return found


def _print_paths(paths: dict[str, PathResult], repeat: int) -> None:
    print(
        f"\nns per call, median of {repeat} interleaved rounds; x bare = "
        "ns / the bare call of the same run; ours faster = this row's ns / "
        "our call() (call_async() for async)"
    )
    for path in PATHS:
        result = paths.get(path)
        if result is None:
            continue
        ours = _ours(
            result.rows, "call_async()" if path == ASYNC else "call()"
        )
        print(f"{path:<44}{'ns':>8}{'x bare':>9}{'ours faster':>13}")
        print(f"  {'bare':<42}{result.bare_ns:>8.0f}{1:>9.1f}")
        for row in result.rows:
            print(
                f"  {row.library + ' ' + row.form:<42}{row.ns:>8.0f}"
                f"{row.ns / result.bare_ns:>9.1f}"
                f"{row.ns / ours.ns:>12.1f}x"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer loops")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    number, repeat = (20_000, 5) if args.quick else (200_000, 9)
    runs = 2 if args.quick else 3
    seconds, rounds = (0.5, 2) if args.quick else (1.0, 3)

    libs, missing = libraries()
    paths: dict[str, PathResult] = {}
    for path in (CLOSED, FAILURE, REJECT):
        print(f"  timing {path}", file=sys.stderr)
        count = number if path == CLOSED else max(number // 4, 1)
        bare, rows = _time_sync(
            _sync_variants(libs, path), BARE[path], count, repeat
        )
        paths[path] = PathResult(path, bare, rows)
    print(f"  timing {ASYNC}", file=sys.stderr)
    bare, rows = _time_async(libs, number, repeat)
    paths[ASYNC] = PathResult(ASYNC, bare, rows)

    print("  memory", file=sys.stderr)
    memory = {lib.name: bytes_per_breaker(lib) for lib in libs}
    leak = {lib.name: bytes_per_rejection(lib) for lib in libs}

    print("  half-open admission", file=sys.stderr)
    admissions = [
        half_open_threads(lib, HALF_OPEN_SYNC[lib.name], runs) for lib in libs
    ] + [
        half_open_tasks(lib, HALF_OPEN_ASYNC[lib.name], runs)
        for lib in libs
        if lib.name in HALF_OPEN_ASYNC
    ]
    print("  parallelism", file=sys.stderr)
    parallel = parallelism(libs, seconds, rounds)

    facts = machine()
    versions = {lib.name: lib.version for lib in libs}
    print(
        f"Python {facts['python']}, {facts['cpus']} CPUs ({facts['cpu']}), "
        f"load average {' '.join(f'{x:.2f}' for x in facts['load'])}; "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
    for line in missing:
        print(f"skipped {line}")
    _print_paths(paths, repeat)
    print(f"\n{'bytes':<44}{'per breaker':>12}{'per rejection':>15}")
    for lib in libs:
        print(
            f"  {lib.name:<42}{memory[lib.name]:>12.0f}{leak[lib.name]:>15.0f}"
        )
    print(
        f"\nhalf-open: {CALLERS} callers at once, trial {TRIAL_SECONDS * 1000:.0f} ms; "
        f"per run ({runs} runs): admitted while half-open / ran / rejected"
    )
    for a in admissions:
        print(
            f"  {a.library + ' ' + a.form + ' (' + a.mode + ')':<44}"
            f"{'/'.join(str(x) for x in a.admitted):>10}"
            f"{'/'.join(str(x) for x in a.ran):>12}"
            f"{'/'.join(str(x) for x in a.rejected):>12}"
            + (f"   ({a.late} arrived late)" if a.late else "")
            + (f"   ({a.errors} other errors)" if a.errors else "")
        )
    print(
        f"\n{THREADS} threads, each calling a {WORK_SECONDS * 1000:g} ms "
        f"sleep through one breaker ({seconds:g} s x {rounds} rounds):"
    )
    print(f"{'':<44}{'calls/s':>10}{'x 1 bare':>10}{'/ 4 bare':>10}")
    for p in parallel:
        label = (
            f"{p.library} {p.form} ({p.threads} thread{'s' * (p.threads > 1)})"
        )
        print(
            f"  {label:<42}{statistics.median(p.calls_per_s):>10.0f}"
            f"{p.parallelism:>10.2f}{p.of_bare:>10.2f}"
        )
    verdicts = goals(paths, admissions)
    verdicts.append(
        {
            "goal": f"bytes per idle breaker <= {GOAL_BYTES}",
            "measured": f"{memory[OURS]:.0f} B",
            "met": memory[OURS] <= GOAL_BYTES,
        }
    )
    print()
    for goal in verdicts:
        print(
            f"goal {goal['goal']}: {goal['measured']}: "
            f"{'met' if goal['met'] else 'MISSED'}"
        )
    if args.json:
        report = {
            "machine": facts,
            "versions": versions,
            "missing": missing,
            "number": number,
            "repeat": repeat,
            "paths": {
                path: {
                    "bare_ns": r.bare_ns,
                    "rows": [
                        {
                            **asdict(row),
                            "x_bare": row.ns / r.bare_ns,
                            "overhead_ns": row.ns - r.bare_ns,
                        }
                        for row in r.rows
                    ],
                }
                for path, r in paths.items()
            },
            "bytes_per_breaker": memory,
            "bytes_per_rejection": leak,
            "half_open": [asdict(a) for a in admissions],
            "parallel": [asdict(p) for p in parallel],
            "goals": verdicts,
        }
        with Path(args.json).open("w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
