"""selfhealing: keeps services alive by itself, and never runs away doing it.

The governance core: circuit breakers with a PERMANENT_OPEN state, a
self-healing engine with backoff and dormant mode, a background task manager
that never duplicates a task, feature flags, tagged logs and status rules.

The guide's module-level objects (``self_healing_engine``,
``circuit_breaker_registry``, ``background_task_manager``, ``feature_flags``,
``event_bus``) are created on first access; see :mod:`selfhealing.defaults`.
"""

from __future__ import annotations

import logging

from typing import TYPE_CHECKING, Any

from selfhealing._logging import configure_logging
from selfhealing.backoff import Backoff, compute_delay
from selfhealing.breaker import (
    BreakerSettings,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
)
from selfhealing.breaker_store import (
    BreakerRecord,
    BreakerStateStore,
    MemoryBreakerStore,
)
from selfhealing.clock import Clock, SystemClock
from selfhealing.engine import (
    AttemptOutcome,
    AttemptResult,
    EngineMode,
    EngineSnapshot,
    SelfHealingEngine,
    SkipReason,
)
from selfhealing.envfiles import EnvSettings
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    ActionError,
    BreakerResetRefusedError,
    CircuitOpenError,
    ConfigError,
    FlagValueError,
    InvalidReasonError,
    NoKeyAvailableError,
    SelfHealingError,
    StoreError,
    UnknownNameError,
)
from selfhealing.flags import FeatureFlags, FlagSource, FlagValue
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.status import (
    Finding,
    Health,
    StatusInputs,
    StatusReport,
    build_status,
    evaluate,
)
from selfhealing.tasks import (
    BackgroundTaskManager,
    TaskManagerSnapshot,
    TaskSnapshot,
    TaskState,
)


if TYPE_CHECKING:
    from selfhealing.defaults import (
        background_task_manager,
        circuit_breaker_registry,
        event_bus,
        feature_flags,
        self_healing_engine,
    )

__all__ = [
    "ActionError",
    "AttemptOutcome",
    "AttemptResult",
    "BackgroundTaskManager",
    "Backoff",
    "BreakerRecord",
    "BreakerResetRefusedError",
    "BreakerSettings",
    "BreakerSnapshot",
    "BreakerState",
    "BreakerStateStore",
    "CircuitBreaker",
    "CircuitBreakerRegistry",
    "CircuitOpenError",
    "Clock",
    "ConfigError",
    "EngineMode",
    "EngineSnapshot",
    "EnvSettings",
    "Event",
    "EventBus",
    "EventKind",
    "FeatureFlags",
    "Finding",
    "FlagSource",
    "FlagValue",
    "FlagValueError",
    "Health",
    "InvalidReasonError",
    "MemoryBreakerStore",
    "NoKeyAvailableError",
    "SelfHealingEngine",
    "SelfHealingError",
    "SkipReason",
    "StatusInputs",
    "StatusReport",
    "StoreError",
    "SystemClock",
    "TaskManagerSnapshot",
    "TaskSnapshot",
    "TaskState",
    "UnknownNameError",
    "background_task_manager",
    "build_status",
    "circuit_breaker_registry",
    "compute_delay",
    "configure_logging",
    "evaluate",
    "event_bus",
    "feature_flags",
    "self_healing_engine",
]

_DEFAULTS = frozenset(
    {
        "background_task_manager",
        "circuit_breaker_registry",
        "event_bus",
        "feature_flags",
        "self_healing_engine",
    }
)

# A library stays quiet unless the application configures logging (once,
# even when this module is reloaded).
_root_logger = logging.getLogger("selfhealing")
if not any(isinstance(h, logging.NullHandler) for h in _root_logger.handlers):
    _root_logger.addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in _DEFAULTS:
        from selfhealing import defaults  # noqa: PLC0415 (created on first use)

        return getattr(defaults, name)
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        return version("selfhealing")
    raise AttributeError(f"module 'selfhealing' has no attribute {name!r}")
