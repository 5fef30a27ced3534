"""Metrics: one runtime's state in Prometheus form, on its own registry.

Two kinds of numbers make up a scrape:

* **Counts of events** (healing outcomes, skips, relapses, breaker trips,
  check results) are tallied as they happen, from the event bus and the
  targets' ``on_check`` hook. They only ever go up, as counters must: a
  breaker's own ``trip_count`` is zeroed by ``reset()``, so trips are
  counted from ``breaker.transition`` events instead.
* **State** (dormant mode, failure streak, breaker states, target health,
  processes, tasks, keys, the audit backlog) is read from the parts'
  snapshots at scrape time, so a scrape shows the state as it is now,
  with no bookkeeping to drift.

Durations (check latency, audit commits) are prometheus_client Histograms,
which are safe to observe from the audit writer thread.

Every :class:`Metrics` has its own ``CollectorRegistry`` (never the global
one), so two runtimes in one process do not collide.
"""

from __future__ import annotations

import threading

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from selfhealing.breaker import BreakerState
from selfhealing.checks import CheckResult
from selfhealing.engine import AttemptOutcome, SelfHealingEngine
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.llm.keypool import KeyPool, KeyState
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.resources import METRIC_HELP
from selfhealing.store import AuditStore
from selfhealing.supervisor import ProcessState, ProcessSupervisor
from selfhealing.targets import Target, TargetHealth
from selfhealing.tasks import BackgroundTaskManager, TaskState


__all__ = [
    "AUDIT_WRITE_BUCKETS",
    "CHECK_BUCKETS",
    "CONTENT_TYPE",
    "Metrics",
    "MetricsSource",
]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# A health check answers in milliseconds, or times out after seconds.
CHECK_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# A WAL commit takes well under a millisecond; seconds mean a lock or a disk.
AUDIT_WRITE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
)  # fmt: skip

_OUTCOMES = {
    EventKind.HEALING_SUCCEEDED: str(AttemptOutcome.SUCCEEDED),
    EventKind.HEALING_FAILED: str(AttemptOutcome.FAILED),
    EventKind.HEALING_SKIPPED: str(AttemptOutcome.SKIPPED),
}
_TRIPPED = frozenset(
    {str(BreakerState.OPEN), str(BreakerState.PERMANENT_OPEN)}
)
_RESULTS = ("ok", "fail")


class MetricsSource(Protocol):
    """What the metrics read: the parts of a Runtime."""

    @property
    def bus(self) -> EventBus: ...
    @property
    def engine(self) -> SelfHealingEngine: ...
    @property
    def registry(self) -> CircuitBreakerRegistry: ...
    @property
    def tasks(self) -> BackgroundTaskManager: ...
    @property
    def targets(self) -> Mapping[str, Target]: ...
    @property
    def supervisor(self) -> ProcessSupervisor: ...
    @property
    def keys(self) -> KeyPool: ...
    @property
    def audit(self) -> AuditStore: ...


@dataclass(frozen=True, slots=True)
class _Spec:
    """One metric family's name, type, help and label names."""

    name: str
    kind: type[GaugeMetricFamily | CounterMetricFamily]
    doc: str
    labels: tuple[str, ...] = ()

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        return self.kind(self.name, self.doc, labels=self.labels)

    def single(self, value: float) -> Metric:
        family = self.family()
        family.add_metric((), float(value))
        return family


_G, _C = GaugeMetricFamily, CounterMetricFamily
INFO = _Spec("selfheal_info", _G, "selfhealing build.", ("version",))
ENABLED = _Spec(
    "selfheal_healing_enabled", _G, "1 when automatic healing is enabled."
)
DORMANT = _Spec("selfheal_dormant", _G, "1 while the engine is DORMANT.")
FAILURES = _Spec(
    "selfheal_consecutive_failures", _G, "Failed healings in a row."
)
BACKOFF = _Spec(
    "selfheal_backoff_delay_seconds",
    _G,
    "Wait after the current failure streak before the next attempt.",
)
IN_PROGRESS = _Spec(
    "selfheal_healings_in_progress", _G, "Targets being healed now."
)
ATTEMPTS = _Spec(
    "selfheal_healing_attempts_total",
    _C,
    "Healing requests by outcome (skipped ones were not attempted).",
    ("target", "outcome"),
)
SKIPPED = _Spec(
    "selfheal_healing_skipped_total",
    _C,
    "Healing requests the engine skipped, by reason.",
    ("target", "reason"),
)
RELAPSES = _Spec(
    "selfheal_healing_relapses_total",
    _C,
    "Verified healings that did not hold.",
    ("target",),
)
BREAKER_STATE = _Spec(
    "selfheal_breaker_state",
    _G,
    "1 for the breaker's current state, 0 for the others.",
    ("breaker", "state"),
)
BREAKER_FAILURES = _Spec(
    "selfheal_breaker_failures",
    _G,
    "Failures the breaker counts now.",
    ("breaker",),
)
BREAKER_TRIPS = _Spec(
    "selfheal_breaker_trips_total",
    _C,
    "Transitions into OPEN or PERMANENT_OPEN.",
    ("breaker",),
)
TARGET_HEALTHY = _Spec(
    "selfheal_target_healthy",
    _G,
    "1 healthy, 0 unhealthy (absent while unknown).",
    ("target",),
)
CHECKS = _Spec(
    "selfheal_checks_total",
    _C,
    "Health checks by result.",
    ("target", "result"),
)
RESTARTS = _Spec(
    "selfheal_process_restarts_total",
    _C,
    "Restarts of a managed process.",
    ("process",),
)
PROCESS_UP = _Spec(
    "selfheal_process_up", _G, "1 while the process runs.", ("process",)
)
TASKS = _Spec(
    "selfheal_background_tasks", _G, "Background tasks by state.", ("state",)
)
# Not "_total": that suffix is reserved for counters (promtool says so).
TASKS_REGISTERED = _Spec(
    "selfheal_background_tasks_registered", _G, "Background tasks registered."
)
KEYS = _Spec("selfheal_llm_keys", _G, "LLM API keys by state.", ("state",))
AUDIT_PENDING = _Spec(
    "selfheal_audit_pending", _G, "Audit events not yet durable."
)
_SPECS = (
    INFO,
    ENABLED,
    DORMANT,
    FAILURES,
    BACKOFF,
    IN_PROGRESS,
    ATTEMPTS,
    SKIPPED,
    RELAPSES,
    BREAKER_STATE,
    BREAKER_FAILURES,
    BREAKER_TRIPS,
    TARGET_HEALTHY,
    CHECKS,
    RESTARTS,
    PROCESS_UP,
    TASKS,
    TASKS_REGISTERED,
    KEYS,
    AUDIT_PENDING,
)


class _Tally:
    """Counts by label values. Locked: the bus publishes on the caller's
    thread, and sync breaker calls may come from any thread."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, ...], int] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str) -> None:
        with self._lock:
            self._counts[labels] = self._counts.get(labels, 0) + 1

    def family(
        self, spec: _Spec, zeros: Iterable[tuple[str, ...]] = ()
    ) -> Metric:
        """*spec* with every count, and 0 for known label sets not seen
        yet (so ``rate()`` sees the first increment)."""
        with self._lock:
            counts = dict(self._counts)
        for labels in zeros:
            counts.setdefault(labels, 0)
        family = spec.family()
        for labels, count in sorted(counts.items()):
            family.add_metric(labels, count)
        return family


class Metrics:
    """The metrics of one runtime; see the module docstring.

    Subscribes to ``source.bus`` once, here; :meth:`close` unsubscribes.
    Pass *registry* to collect into your own (tests pass a fresh one);
    by default each instance makes its own, never the global REGISTRY.
    """

    def __init__(
        self,
        source: MetricsSource,
        *,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._source = source
        self.registry = CollectorRegistry() if registry is None else registry
        self._version = version("selfhealing")
        self._attempts = _Tally()
        self._skipped = _Tally()
        self._relapses = _Tally()
        self._trips = _Tally()
        self._checks = _Tally()
        self.registry.register(self)
        self.check_seconds = Histogram(
            "selfheal_check_duration_seconds",
            "Health check latency.",
            ["target"],
            buckets=CHECK_BUCKETS,
            registry=self.registry,
        )
        self.audit_write_seconds = Histogram(
            "selfheal_audit_write_seconds",
            "Audit trail commits (one batch of events each).",
            buckets=AUDIT_WRITE_BUCKETS,
            registry=self.registry,
        )
        # Weakly: from_defaults() runtimes share the process-wide bus.
        self._unsubscribe = source.bus.subscribe_weakly(self._on_event)

    # ------------------------------------------------------------- feeding

    def _on_event(self, event: Event) -> None:
        # Runs for every event on the publisher's thread: one dict lookup
        # for the events not counted here.
        kind = event.kind
        outcome = _OUTCOMES.get(kind)
        if outcome is not None:
            target = event.target or ""
            self._attempts.inc(target, outcome)
            if kind is EventKind.HEALING_SKIPPED:
                self._skipped.inc(target, event.reason or "unknown")
        elif kind is EventKind.HEALING_RELAPSED:
            self._relapses.inc(event.target or "")
        elif (
            kind is EventKind.BREAKER_TRANSITION
            and event.data.get("to") in _TRIPPED
        ):
            self._trips.inc(str(event.data.get("breaker")))

    def observe_check(self, target: Target, result: CheckResult) -> None:
        """A target's ``on_check`` hook: count and time one check."""
        self._checks.inc(target.name, "ok" if result.ok else "fail")
        self.check_seconds.labels(target.name).observe(result.latency)

    def observe_commit(self, events: int, seconds: float) -> None:  # noqa: ARG002 (the hook's signature)
        """The audit store's ``on_commit`` hook (on its writer thread)."""
        self.audit_write_seconds.observe(seconds)

    def close(self) -> None:
        """Stop counting events (idempotent)."""
        self._unsubscribe()

    # ----------------------------------------------------------- scraping

    def render(self) -> bytes:
        """The exposition in text format 0.0.4 (:data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def describe(self) -> Iterator[Metric]:
        """The families :meth:`collect` yields, without samples (lets the
        registry refuse a second collector with the same names)."""
        for spec in _SPECS:
            yield spec.family()

    def collect(self) -> Iterator[Metric]:
        """Every family except the histograms, as of now."""
        source = self._source
        targets = list(source.targets)
        info = INFO.family()
        info.add_metric((self._version,), 1)
        yield info
        yield from self._engine()
        yield self._attempts.family(
            ATTEMPTS, ((t, o) for t in targets for o in _OUTCOMES.values())
        )
        yield self._skipped.family(SKIPPED)
        yield self._relapses.family(RELAPSES, ((t,) for t in targets))
        yield from self._breakers()
        yield from self._targets()
        yield from self._processes()
        yield from self._tasks_and_keys()
        yield AUDIT_PENDING.single(source.audit.health.pending)
        yield from self._resources()

    def _resources(self) -> Iterator[Metric]:
        """The resource monitor's latest readings (processes, daemon, host)."""
        monitor = getattr(self._source, "resources", None)
        if monitor is None:
            return
        families: dict[str, GaugeMetricFamily] = {}
        for sample in monitor.snapshot().metrics():
            family = families.get(sample.name)
            if family is None:
                family = families[sample.name] = GaugeMetricFamily(
                    sample.name,
                    METRIC_HELP.get(sample.name, sample.name),
                    labels=[name for name, _ in sample.labels],
                )
            family.add_metric(
                [value for _, value in sample.labels], sample.value
            )
        yield from families.values()

    def _engine(self) -> Iterator[Metric]:
        snapshot = self._source.engine.snapshot()
        yield ENABLED.single(snapshot.enabled)
        yield DORMANT.single(snapshot.is_dormant)
        yield FAILURES.single(snapshot.consecutive_failures)
        yield BACKOFF.single(snapshot.backoff_delay)
        yield IN_PROGRESS.single(len(snapshot.in_progress))

    def _breakers(self) -> Iterator[Metric]:
        breakers = self._source.registry.snapshot()
        states = BREAKER_STATE.family()
        failures = BREAKER_FAILURES.family()
        for breaker in breakers:
            for state in BreakerState:
                states.add_metric(
                    (breaker.name, str(state)), float(breaker.state is state)
                )
            failures.add_metric((breaker.name,), breaker.failure_count)
        yield states
        yield failures
        yield self._trips.family(BREAKER_TRIPS, ((b.name,) for b in breakers))

    def _targets(self) -> Iterator[Metric]:
        targets = list(self._source.targets.values())
        healthy = TARGET_HEALTHY.family()
        for target in targets:
            if target.health is not TargetHealth.UNKNOWN:
                healthy.add_metric(
                    (target.name,),
                    float(target.health is TargetHealth.HEALTHY),
                )
        yield healthy
        yield self._checks.family(
            CHECKS, ((t.name, r) for t in targets for r in _RESULTS)
        )

    def _processes(self) -> Iterator[Metric]:
        restarts = RESTARTS.family()
        up = PROCESS_UP.family()
        for process in self._source.supervisor.snapshot():
            restarts.add_metric((process.name,), process.restarts)
            up.add_metric(
                (process.name,), float(process.state is ProcessState.RUNNING)
            )
        yield restarts
        yield up

    def _tasks_and_keys(self) -> Iterator[Metric]:
        snapshot = self._source.tasks.snapshot()
        tasks = TASKS.family()
        for state in TaskState:
            count = sum(task.state is state for task in snapshot.tasks)
            tasks.add_metric((str(state),), count)
        yield tasks
        yield TASKS_REGISTERED.single(snapshot.total_tasks)
        pool = self._source.keys.snapshot()
        keys = KEYS.family()
        for key_state, count in (
            (KeyState.ACTIVE, pool.active),
            (KeyState.RATE_LIMITED, pool.rate_limited),
            (KeyState.FAILED, pool.failed),
        ):
            keys.add_metric((str(key_state),), count)
        yield keys
