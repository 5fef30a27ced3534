"""The governance core in one minute: heal a flaky service, watch it give up.

    python examples/quickstart.py

A pretend service fails every healing attempt. The engine retries with
exponential backoff, the ``self-healing-main`` breaker trips, and after too
many failures the engine goes dormant and waits for a human. A FakeClock
stands in for an hour of wall time, so this runs in a second.
"""

from __future__ import annotations

import asyncio
import json

from selfhealing import (
    BackgroundTaskManager,
    Backoff,
    CircuitBreakerRegistry,
    EventBus,
    SelfHealingEngine,
    StatusInputs,
    build_status,
)
from selfhealing.testing import FakeClock


async def main() -> None:
    clock = FakeClock()
    bus = EventBus()
    bus.subscribe(
        lambda event: print(f"  event  {event.kind:<24} {event.message}")
    )
    registry = CircuitBreakerRegistry(clock=clock, bus=bus)
    engine = SelfHealingEngine(
        registry=registry,
        backoff=Backoff.of(base=5, cap=1800),
        clock=clock,
        bus=bus,
    )
    tasks = BackgroundTaskManager(clock=clock, bus=bus)

    async def restart_and_verify() -> bool:
        return False  # the root cause is not fixed: healing never holds

    print("Healing a service whose fix never works:")
    while not engine.is_dormant:
        wait = engine.retry_after() or 0.0
        clock.advance(wait)
        result = await engine.attempt("web", restart_and_verify)
        print(
            f"  t={clock.monotonic():>6.0f}s  {result.outcome:<9} "
            f"consecutiveFailures={engine.consecutive_failures} "
            f"backoffDelay={round(engine.backoff_delay * 1000)}"
        )

    status = build_status(
        StatusInputs(
            engine=engine.snapshot(),
            breakers=registry.snapshot(),
            tasks=tasks.snapshot(),
        ),
        now=clock.time(),
    )
    print("\nStatus, as GET /api/status would show it:")
    print(
        json.dumps(
            {
                key: status[key]
                for key in (
                    "status",
                    "selfHealing",
                    "issues",
                    "recommendations",
                )
            },
            indent=2,
        )
    )

    print("\nThe operator fixes the root cause and resumes:")
    resumed = engine.resume_from_dormant(
        "Valid API keys restored", actor="you"
    )
    print(f"  resume_from_dormant(...) -> {resumed}")
    print(f"  main breaker: {registry.get('self-healing-main').get_state()}")


if __name__ == "__main__":
    asyncio.run(main())
