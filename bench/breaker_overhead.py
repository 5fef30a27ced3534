"""Breaker overhead: ns per guarded call, each path beside a bare call.

    python bench/breaker_overhead.py [--quick] [--json FILE]

Paths: closed success, counted failure and open rejection (sync), closed
success (async), and bytes per idle breaker. Every figure is a median of
several repeats, measured in this one process next to the bare call it
wraps, so ratios hold on a noisy shared machine even when absolute
nanoseconds move.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import timeit
import tracemalloc

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selfhealing import CircuitBreaker, CircuitOpenError


class Boom(Exception):
    """The failure the guarded function raises."""


def ok() -> int:
    return 1


def boom() -> None:
    raise Boom


async def aok() -> int:
    return 1


@dataclass
class Figure:
    path: str
    bare_ns: float
    guarded_ns: float

    @property
    def overhead_ns(self) -> float:
        return self.guarded_ns - self.bare_ns


def median_ns(
    stmt: str, env: dict[str, Any], number: int, repeat: int
) -> float:
    """Median ns per execution of *stmt*, timeit's own loop subtracted."""
    runs = timeit.repeat(stmt, number=number, repeat=repeat, globals=env)
    empty = timeit.repeat("pass", number=number, repeat=repeat, globals=env)
    return (statistics.median(runs) - statistics.median(empty)) / number * 1e9


BARE_FAIL = """
try:
    boom()
except Boom:
    pass
"""
GUARDED_FAIL = """
try:
    counting.call(boom)
except Boom:
    pass
"""
# The cheapest honest comparison for a rejection: raising and catching.
BARE_REJECT = """
try:
    raise CircuitOpenError("open", "OPEN", 1.0)
except CircuitOpenError:
    pass
"""
GUARDED_REJECT = """
try:
    opened.call(ok)
except CircuitOpenError:
    pass
"""


def sync_figures(number: int, repeat: int) -> list[Figure]:
    opened = CircuitBreaker("open", failure_threshold=1, recovery_timeout=3600)
    try:
        opened.call(boom)
    except Boom:
        pass
    env: dict[str, Any] = {
        "ok": ok,
        "boom": boom,
        "Boom": Boom,
        "CircuitOpenError": CircuitOpenError,
        "closed": CircuitBreaker("closed"),
        "counting": CircuitBreaker("counting", failure_threshold=10**9),
        "opened": opened,
    }
    slow = max(number // 4, 1)
    return [
        Figure(
            "closed success (sync)",
            median_ns("ok()", env, number, repeat),
            median_ns("closed.call(ok)", env, number, repeat),
        ),
        Figure(
            "counted failure (sync)",
            median_ns(BARE_FAIL, env, slow, repeat),
            median_ns(GUARDED_FAIL, env, slow, repeat),
        ),
        Figure(
            "open rejection (sync)",
            median_ns(BARE_REJECT, env, slow, repeat),
            median_ns(GUARDED_REJECT, env, slow, repeat),
        ),
    ]


def async_figure(number: int, repeat: int) -> Figure:
    breaker = CircuitBreaker("async")

    async def bare() -> None:
        for _ in range(number):
            await aok()

    async def guarded() -> None:
        for _ in range(number):
            await breaker.call_async(aok)

    async def empty() -> None:
        for _ in range(number):
            pass

    def timed(factory: Callable[[], object]) -> float:
        loop = asyncio.new_event_loop()
        try:
            runs = []
            for _ in range(repeat):
                coro = factory()
                start = timeit.default_timer()
                loop.run_until_complete(coro)  # type: ignore[arg-type]
                runs.append(timeit.default_timer() - start)
        finally:
            loop.close()
        return statistics.median(runs) / number * 1e9

    base = timed(empty)
    return Figure(
        "closed success (async)",
        timed(bare) - base,
        timed(guarded) - base,
    )


def bytes_per_breaker(count: int = 10_000) -> float:
    names = [f"breaker-{i}" for i in range(count)]
    keep: list[CircuitBreaker] = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for name in names:
        keep.append(CircuitBreaker(name))
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # The list holding them costs 8 bytes a slot: not the breaker's.
    return grown / count - 8


GOALS = {
    "closed success (sync)": 150,
    "counted failure (sync)": None,
    "open rejection (sync)": 900,
    "closed success (async)": 300,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer loops")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    number, repeat = (20_000, 5) if args.quick else (200_000, 9)

    figures = [*sync_figures(number, repeat), async_figure(number, repeat)]
    memory = bytes_per_breaker()

    print(f"Python {sys.version.split()[0]}, medians of {repeat} repeats")
    print(f"{'path':<26}{'bare ns':>10}{'guarded ns':>12}{'goal':>8}")
    for f in figures:
        goal = GOALS.get(f.path)
        print(
            f"{f.path:<26}{f.bare_ns:>10.0f}{f.guarded_ns:>12.0f}"
            f"{('<= ' + str(goal)) if goal else '':>8}"
        )
    print(
        f"{'bytes per idle breaker':<26}{'':>10}{memory:>12.0f}{'<= 300':>8}"
    )
    if args.json:
        with Path(args.json).open("w", encoding="utf-8") as out:
            json.dump(
                {
                    "figures": [
                        {**asdict(f), "overhead_ns": f.overhead_ns}
                        for f in figures
                    ],
                    "bytes_per_breaker": memory,
                },
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
