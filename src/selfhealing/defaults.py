"""The process-wide default instances behind the guide's snippets.

``from selfhealing import self_healing_engine, circuit_breaker_registry,
background_task_manager`` gives thin conveniences over explicitly built
objects: one event bus, one breaker registry, one engine, one task manager
and the feature flags of the working directory, all on the system clock.

They are created on first use (so importing selfhealing never reads a file)
and kept in a dict that survives ``importlib.reload`` of this module: a
reload, or a dev server re-importing your code, never builds a second task
manager next to the first, so tasks are never doubled.
"""

from __future__ import annotations

import threading

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from selfhealing.engine import SelfHealingEngine
from selfhealing.envfiles import EnvSettings
from selfhealing.events import EventBus
from selfhealing.flags import FeatureFlags
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.tasks import BackgroundTaskManager


__all__ = [
    "background_task_manager",
    "circuit_breaker_registry",
    "event_bus",
    "feature_flags",
    "self_healing_engine",
]

if TYPE_CHECKING:
    # Created on first access through __getattr__ below.
    background_task_manager: BackgroundTaskManager
    circuit_breaker_registry: CircuitBreakerRegistry
    event_bus: EventBus
    feature_flags: FeatureFlags
    self_healing_engine: SelfHealingEngine

# Reused across reloads: a reload re-runs this module in the same globals.
_instances: dict[str, Any] = globals().get("_instances", {})
_lock: threading.RLock = globals().get("_lock", threading.RLock())


def _event_bus() -> EventBus:
    return EventBus()


def _circuit_breaker_registry() -> CircuitBreakerRegistry:
    return CircuitBreakerRegistry(bus=_get("event_bus"))


def _feature_flags() -> FeatureFlags:
    return FeatureFlags(settings=EnvSettings("."), bus=_get("event_bus"))


def _self_healing_engine() -> SelfHealingEngine:
    return SelfHealingEngine(
        registry=_get("circuit_breaker_registry"),
        flags=_get("feature_flags"),
        bus=_get("event_bus"),
    )


def _background_task_manager() -> BackgroundTaskManager:
    return BackgroundTaskManager(bus=_get("event_bus"))


_FACTORIES: dict[str, Callable[[], Any]] = {
    "event_bus": _event_bus,
    "circuit_breaker_registry": _circuit_breaker_registry,
    "feature_flags": _feature_flags,
    "self_healing_engine": _self_healing_engine,
    "background_task_manager": _background_task_manager,
}


def _get(name: str) -> Any:
    instance = _instances.get(name)
    if instance is None:
        with _lock:
            instance = _instances.get(name)
            if instance is None:
                instance = _instances[name] = _FACTORIES[name]()
    return instance


def __getattr__(name: str) -> Any:
    if name in _FACTORIES:
        return _get(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def install(**instances: Any) -> None:
    """Make explicitly built objects the defaults (the daemon does this).

    Only names not created yet can be installed, so code that already
    holds a default never ends up with a stale twin.
    """
    with _lock:
        for name, instance in instances.items():
            if name not in _FACTORIES:
                raise AttributeError(f"no default called {name!r}")
            current = _instances.get(name)
            if current is not None and current is not instance:
                raise RuntimeError(
                    f"default {name} already exists; install() must run "
                    "before its first use"
                )
            _instances[name] = instance


def _reset_for_tests() -> None:
    """Forget every default (tests only)."""
    with _lock:
        _instances.clear()
