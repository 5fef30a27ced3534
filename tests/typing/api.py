"""Type-checked calls to the public API (mypy runs on this file, not pytest)."""

from __future__ import annotations

import asyncio

from selfhealing import (
    BackgroundTaskManager,
    BreakerState,
    CircuitBreaker,
    CircuitBreakerRegistry,
    SelfHealingEngine,
    background_task_manager,
    circuit_breaker_registry,
    self_healing_engine,
)


breaker = CircuitBreaker("db", failure_threshold=3, recovery_timeout=30)
result: int = breaker.call(lambda x: x + 1, 1)
state: BreakerState = breaker.reset(True)


@breaker
def fetch(key: str) -> bytes:
    return key.encode()


data: bytes = fetch("k")


@breaker
async def fetch_async(key: str) -> bytes:
    return key.encode()


async def use_async() -> bytes:
    with breaker:
        pass
    async with breaker:
        pass
    return await fetch_async("k")


registry = CircuitBreakerRegistry()
main_breaker: CircuitBreaker = registry.get_or_create(
    "self-healing-main", failure_threshold=5
)
resumed: bool = self_healing_engine.resume_from_dormant(
    "Valid API keys restored"
)
circuit_breaker_registry.get("self-healing-main").reset(True)
background_task_manager.register_interval("poll", lambda: None, 5.0)
background_task_manager.unregister("poll")
removed: int = background_task_manager.cleanup()
paused: int = background_task_manager.pause_all()
engine = SelfHealingEngine(registry=registry)
manager = BackgroundTaskManager()


async def heal() -> bool:
    return True


outcome = asyncio.run(engine.attempt("web", heal))
