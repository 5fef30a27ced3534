"""Runtime: every part one daemon (or one embedding app) runs, wired once.

Built from a Config and a working directory, it owns the event bus, the
settings and flags read from the environment and ``.env`` files, the breaker
registry, the engine, the background task manager and the audit store, and
starts and stops them in order. The HTTP API and the CLI only talk to it.
"""

from __future__ import annotations

import asyncio
import logging
import os

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from selfhealing.backoff import Backoff
from selfhealing.breaker import CircuitBreaker
from selfhealing.checks import HttpSession
from selfhealing.childenv import withhold
from selfhealing.clock import Clock, system_clock
from selfhealing.config import Config
from selfhealing.engine import SelfHealingEngine
from selfhealing.envfiles import EnvSettings
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import ConfigError
from selfhealing.flags import FeatureFlags
from selfhealing.forecast import ForecastRule, PreventiveRule
from selfhealing.llm.advisor import LLMAdvisor
from selfhealing.llm.keypool import KeyPool, KeyState
from selfhealing.metrics import Metrics
from selfhealing.notify import Notifier, notifications_status
from selfhealing.preventive import PREVENTIVE_TASK, PreventiveHealer
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.resources import ResourceMonitor
from selfhealing.status import (
    Finding,
    Health,
    KeySummary,
    StatusInputs,
    build_status,
)
from selfhealing.store import AuditStore, MemoryAuditStore
from selfhealing.store.sqlite import SQLiteAuditStore
from selfhealing.supervisor import ManagedProcess, ProcessSupervisor
from selfhealing.targets import Target, TargetSnapshot
from selfhealing.tasks import BackgroundTaskManager
from selfhealing.wiring import (
    build_action,
    build_process,
    build_targets,
    targets_by_process,
)


__all__ = ["Core", "Runtime"]

_log = logging.getLogger("selfhealing.daemon")

DEFAULT_STATE_DIR = ".selfhealing"
LLM_BREAKER = "llm-anthropic"
STATUS_TTL = 0.1  # seconds a status document may be served again
AUDIT_DB = "audit.db"


@dataclass(frozen=True, slots=True)
class Core:
    """The governance objects a runtime serves."""

    bus: EventBus
    flags: FeatureFlags
    registry: CircuitBreakerRegistry
    engine: SelfHealingEngine
    tasks: BackgroundTaskManager

    @classmethod
    def build(
        cls, config: Config, settings: EnvSettings, clock: Clock
    ) -> Core:
        """Build every part from *config*; an invalid flag raises here."""
        bus = EventBus()
        flags = FeatureFlags(
            settings=settings, config=config.flags, bus=bus, clock=clock
        )
        registry = CircuitBreakerRegistry(clock=clock, bus=bus)
        for name, breaker in config.breakers.items():
            registry.configure(name, **breaker.model_dump())
        engine = SelfHealingEngine(
            registry=registry,
            flags=flags,
            backoff=Backoff.of(
                base=config.engine.backoff_base, cap=config.engine.backoff_max
            ),
            max_consecutive_failures=config.engine.max_consecutive_failures,
            clock=clock,
            bus=bus,
        )
        tasks = BackgroundTaskManager(clock=clock, bus=bus)
        return cls(bus, flags, registry, engine, tasks)


class Runtime:
    """The governed system as one object; see the module docstring."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        directory: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Clock = system_clock,
        persistent: bool = True,
        core: Core | None = None,
    ) -> None:
        self.config = config if config is not None else Config()
        self.directory = Path(directory) if directory is not None else Path()
        self.clock = clock
        if core is None:
            core = Core.build(
                self.config,
                EnvSettings(
                    self.directory, os.environ if environ is None else environ
                ),
                clock,
            )
        self.bus = core.bus
        self.flags = core.flags
        self.settings = core.flags.settings
        self.registry = core.registry
        self.engine = core.engine
        self.tasks = core.tasks
        self.engine.main_breaker  # noqa: B018 (listed in status from the start)
        # First: it reads the other parts only when scraped, and the audit
        # store and targets below take its hooks.
        self.metrics = Metrics(self)
        self.audit: AuditStore = (
            SQLiteAuditStore(
                self.state_dir / AUDIT_DB,
                retention=self.config.state.retention,
                clock=clock,
                on_commit=self.metrics.observe_commit,
            )
            if persistent
            else MemoryAuditStore()
        )
        self._unsubscribe_audit: Any = None
        self.started_at: float | None = None
        # Set (on the loop) when serving ends: live streams close on it.
        self.stopping = asyncio.Event()
        withhold(key.env for key in self.config.llm.keys)
        self.keys = KeyPool.from_settings(
            self.settings,
            [k.model_dump(exclude_none=True) for k in self.config.llm.keys],
            clock=clock,
            bus=self.bus,
            on_change=self._key_changed,
        )
        self.advisor = self._build_advisor()
        self.http = HttpSession()
        self.supervisor = ProcessSupervisor(
            clock=clock, on_exit=self._process_exited
        )
        for process in self.config.processes:
            self.supervisor.add(
                build_process(
                    process,
                    directory=self.directory,
                    log_dir=self.log_dir,
                    state_dir=self.state_dir,
                    clock=clock,
                )
            )
        self.targets: dict[str, Target] = build_targets(
            self.config,
            directory=self.directory,
            engine=self.engine,
            advisor=self.advisor,
            registry=self.registry,
            supervisor=self.supervisor,
            session=self.http,
            detection=lambda: self.flags.auto_detection,
            supervision=lambda: self.flags.process_monitoring,
            clock=clock,
            bus=self.bus,
            on_check=self.metrics.observe_check,
        )
        self._crash_targets = targets_by_process(self.config, self.targets)
        self.resources = ResourceMonitor(
            clock=clock,
            interval=self.config.resources.interval,
            ring=self.config.resources.ring,
            disk_paths=self.config.resources.disk_paths,
            processes=lambda: self.supervisor,
            enabled=lambda: self.flags.process_monitoring,
        )
        self.preventive = self._build_preventive()
        self._status_cache: tuple[float, int, bytes] | None = None
        self._status_generation = 0
        # Weakly: from_defaults() runtimes share the process-wide bus.
        self.bus.subscribe_weakly(self._status_changed)
        self.notifier: Notifier | None = (
            Notifier.for_runtime(self)
            if self.config.notifications.urls
            else None
        )

    def _build_preventive(self) -> PreventiveHealer | None:
        """The ``[[preventive]]`` rules; ConfigError if one cannot work."""
        specs = self.config.preventive
        if not specs:
            return None
        rules: list[PreventiveRule] = []
        subjects: dict[str, tuple[str, CircuitBreaker | None]] = {}
        for i, spec in enumerate(specs):
            try:
                rule = PreventiveRule.from_condition(
                    spec.name,
                    spec.condition,
                    action=spec.action,
                    cooldown=spec.cooldown,
                    process=spec.process,
                    max_age=3 * self.resources.interval,
                )
                if spec.window is not None and isinstance(
                    rule.rule, ForecastRule
                ):
                    rule.rule = replace(rule.rule, window=spec.window)
                self.resources.validate(rule)
            except ConfigError as exc:
                raise ConfigError(
                    exc.detail, where=f"preventive[{i}]"
                ) from None
            rules.append(rule)
            watchers = self._crash_targets.get(spec.process or "", [])
            subjects[rule.name] = (
                (watchers[0].name, watchers[0].breaker)
                if watchers
                else (f"preventive:{rule.name}", None)
            )
        actions = {
            config.name: build_action(
                config,
                directory=self.directory,
                session=self.http,
                supervisor=self.supervisor,
                clock=self.clock,
            )
            for config in self.config.actions
            if config.name in {spec.action for spec in specs}
        }
        return PreventiveHealer(
            rules,
            monitor=self.resources,
            engine=self.engine,
            actions=actions,
            enabled=lambda: self.flags.preventive_healing,
            subject=lambda rule: subjects[rule.name],
            verify_timeouts={spec.name: spec.verify_timeout for spec in specs},
            clock=self.clock,
            bus=self.bus,
        )

    def _build_advisor(self) -> LLMAdvisor | None:
        """The advisor, when some ladder asks it (the SDK loads lazily)."""
        if not self.config.advisor_configured:
            return None
        if LLM_BREAKER not in self.config.breakers:
            # An LLM outage must not need a human: never permanent.
            self.registry.configure(
                LLM_BREAKER,
                failure_threshold=3,
                recovery_timeout=60,
                permanent_after_trips=0,
            )
        llm = self.config.llm
        return LLMAdvisor(
            self.keys,
            self.registry.get_or_create(LLM_BREAKER),
            model=llm.model,
            base_url=self.settings.value("ANTHROPIC_BASE_URL") or llm.base_url,
            timeout=llm.timeout,
            deadline=llm.deadline,
            max_tokens=llm.max_tokens,
            min_confidence=llm.min_confidence,
            clock=self.clock,
            bus=self.bus,
        )

    def _key_changed(
        self, key_id: str, old: KeyState, new: KeyState, reason: str | None
    ) -> None:
        self.bus.publish(
            Event(
                EventKind.KEY_STATE,
                self.clock.time(),
                "KeyPool",
                f"API key {key_id}: {old} -> {new}",
                reason=reason,
                data={"key": key_id, "from": str(old), "to": str(new)},
            )
        )

    @classmethod
    def from_defaults(
        cls, config: Config | None = None, *, persistent: bool = False
    ) -> Runtime:
        """A runtime around the process-wide defaults, for embedding: the
        engine, breakers and tasks your code uses are the ones it serves."""
        from selfhealing import defaults  # noqa: PLC0415 (created on demand)

        core = Core(
            bus=defaults.event_bus,
            flags=defaults.feature_flags,
            registry=defaults.circuit_breaker_registry,
            engine=defaults.self_healing_engine,
            tasks=defaults.background_task_manager,
        )
        return cls(config, core=core, persistent=persistent)

    @property
    def state_dir(self) -> Path:
        # The environment beats the config, as for the flags.
        configured = (
            self.settings.value("SELFHEAL_STATE_DIR") or self.config.state.dir
        )
        return self.directory / (configured or DEFAULT_STATE_DIR)

    @property
    def log_dir(self) -> Path:
        return self.directory / self.config.logging.dir

    @property
    def admin_token(self) -> str | None:
        """SELFHEAL_ADMIN_TOKEN from the environment or the .env files."""
        token = self.settings.value("SELFHEAL_ADMIN_TOKEN")
        return token or None

    async def start(self) -> None:
        """Open the audit trail and start every background part."""
        self.stopping.clear()
        try:
            opener = getattr(self.audit, "open", None)
            if opener is not None:
                opener()
        except Exception as exc:
            raise ConfigError(
                f"cannot open the audit trail: {exc}",
                where=str(self.state_dir / AUDIT_DB),
            ) from exc
        self._unsubscribe_audit = self.bus.subscribe(self.audit.record)
        self.started_at = self.clock.time()
        if self.notifier is not None:  # before anything it reports
            await self.notifier.start()
        self._note_restart_from_dormant()
        if self.advisor is not None:
            # Before any probe or process runs: see LLMAdvisor.prepare.
            await self.advisor.prepare()
        if len(self.supervisor):
            reaped = await self.supervisor.reap_orphans(self.state_dir)
            if reaped:
                _log.warning(
                    "stopped %d processes left running by a previous run: %s",
                    len(reaped),
                    reaped,
                )
            await self.supervisor.start_all()
        for target in self.targets.values():
            self._schedule(target)
        self.resources.register(self.tasks)
        if self.preventive is not None:
            self.tasks.register_interval(
                PREVENTIVE_TASK,
                self.preventive.evaluate,
                self.resources.interval,
                kind="monitor",
            )
        await self.tasks.start()
        _log.info(
            "started: %d processes, %d targets, %d breakers, %d tasks",
            len(self.supervisor),
            len(self.targets),
            len(self.registry),
            len(self.tasks),
        )

    def add_target(self, target: Target) -> None:
        """Watch *target* too (library mode: your own checks and actions,
        e.g. CallableCheck and CallableAction). Replaces one of that name."""
        if target.on_check is None:
            target.on_check = self.metrics.observe_check
        self.targets[target.name] = target
        self._schedule(target)

    def _schedule(self, target: Target) -> None:
        self.tasks.register_interval(
            f"check:{target.name}",
            target.probe,
            target.interval,
            initial_delay=target.initial_delay,
            kind="check",
        )

    def _process_exited(self, process: ManagedProcess, code: int) -> None:
        self.bus.publish(
            Event(
                EventKind.PROCESS_EXITED,
                self.clock.time(),
                "ProcessSupervisor",
                f"process {process.name} exited with code {code}",
                target=process.name,
                data={"exitCode": code, "pid": process.snapshot().pid},
            )
        )
        if not self.flags.process_monitoring:
            _log.warning(
                "process %s exited (code %d); not healing it: "
                "FEATURE_PROCESS_MONITORING_ENABLED is off",
                process.name,
                code,
            )
            return
        for target in self._crash_targets.get(process.name, ()):
            target.mark_unhealthy(
                f"process {process.name} exited with code {code}"
            )

    def _note_restart_from_dormant(self) -> None:
        """A restart clears dormant mode (the guide's last resort): say so."""
        last = self.audit.query(kind="engine.*", limit=1)
        if not last or last[-1].kind != EventKind.DORMANT_ENTERED:
            return
        reason = last[-1].reason or "unknown"
        _log.warning(
            "the previous run ended in DORMANT mode (%s); the restart "
            "cleared it and healing is active again. If the root cause is "
            "not fixed, it will go dormant again.",
            reason,
        )
        self.bus.publish(
            Event(
                EventKind.DORMANT_EXITED,
                self.clock.time(),
                "SelfHealing",
                "dormant mode cleared by a daemon restart",
                actor="daemon restart",
                reason=f"restart (was dormant: {reason})",
                data={"previousReason": reason},
            )
        )

    async def stop(self) -> None:
        """Cancel probes and healings, stop processes, flush the audit."""
        self.stopping.set()
        if self.notifier is not None:  # a shutdown is no incident
            await self.notifier.stop()
        await self.tasks.shutdown()
        # Healings first, so none restarts a process after stop_all().
        for target in self.targets.values():
            await target.aclose()
        if self.preventive is not None:
            await self.preventive.aclose()
        await self.supervisor.stop_all()
        await self.http.aclose()
        if self._unsubscribe_audit is not None:
            self._unsubscribe_audit()
            self._unsubscribe_audit = None
        # Flushing waits on the writer thread: keep the loop free meanwhile.
        await asyncio.to_thread(self.audit.flush, 5.0)
        await asyncio.to_thread(self.audit.close)
        _log.info("stopped")

    # ---------------------------------------------------------------- status

    def status_inputs(self) -> StatusInputs:
        findings: list[Finding] = []
        health = self.audit.health
        if not health.ok:
            findings.append(
                Finding(
                    Health.WARNING,
                    "WARNING: Audit trail cannot write "
                    f"({health.last_error}); {health.pending} events pending",
                    "Free disk space or release the database lock in "
                    f"{self.state_dir}; pending events are written once "
                    "it can",
                )
            )
        if self.notifier is not None:
            findings.extend(self.notifier.findings())
        findings.extend(
            Finding(Health.WARNING, f"WARNING: {f.issue}", f.recommendation)
            for f in self.resources.daemon_health().findings
        )
        unprobed = sorted(
            name for name in self.targets if f"check:{name}" not in self.tasks
        )
        if unprobed and self.started_at is not None:
            findings.append(
                Finding(
                    Health.WARNING,
                    "WARNING: No probe runs for "
                    f"{', '.join(unprobed)} (its check task was removed)",
                    "Restart the daemon to register the checks again "
                    "(selfheal tasks cleanup removes them too)",
                )
            )
        if self.preventive is not None:
            findings.extend(
                Finding(Health.WARNING, f"WARNING: {issue}", advice)
                for issue, advice in self.preventive.issues()
            )
        return StatusInputs(
            engine=self.engine.snapshot(),
            breakers=self.registry.snapshot(),
            tasks=self.tasks.snapshot(),
            flags=self.flags.snapshot(),
            flag_errors=(*self.flags.errors, *self.settings.errors),
            targets=[t.snapshot() for t in self.targets.values()],
            keys=self._key_summary(),
            findings=findings,
        )

    def _key_summary(self) -> KeySummary:
        keys = self.keys.snapshot()
        return KeySummary(
            total=keys.total,
            active=keys.active,
            failed=keys.failed,
            rate_limited=keys.rate_limited,
            advisor_configured=self.advisor is not None,
        )

    def llm_status(self) -> dict[str, Any]:
        """``llm`` in the status document."""
        keys = self.keys.snapshot()
        advisor = self.advisor
        return {
            "enabled": advisor is not None and keys.active > 0,
            "advisorConfigured": advisor is not None,
            "model": None if advisor is None else advisor.model,
            "breaker": None if advisor is None else str(advisor.breaker.state),
            "keyManagement": keys.to_dict(),
        }

    def status_json(self) -> bytes:
        """The status document as JSON, built at most once per
        STATUS_TTL unless something happened meanwhile.

        Every state change an operator acts on publishes an event, which
        drops the cached copy, so an answer is never older than the last
        event; counters that move without one (latencies, task runs) are
        at most STATUS_TTL old. Under load this keeps ``/api/status``
        close to a bare route's throughput.
        """
        now = self.clock.monotonic()
        cached = self._status_cache
        if (
            cached is not None
            and cached[1] == self._status_generation
            and now - cached[0] < STATUS_TTL
        ):
            return cached[2]
        body = orjson.dumps(self.status(), option=orjson.OPT_NON_STR_KEYS)
        self._status_cache = (now, self._status_generation, body)
        return body

    def _status_changed(self, _: Event) -> None:
        self._status_generation += 1

    def status(self) -> dict[str, Any]:
        """The ``GET /api/status`` document."""
        inputs = self.status_inputs()
        return build_status(
            inputs,
            now=self.clock.time(),
            extra={
                "targets": [
                    t.to_dict()
                    for t in inputs.targets
                    if isinstance(t, TargetSnapshot)
                ],
                "processes": [p.to_dict() for p in self.supervisor.snapshot()],
                "llm": self.llm_status(),
                "auditTrail": self.audit.health.to_dict(),
                "notifications": notifications_status(self.notifier),
                "resources": {
                    **self.resources.snapshot().to_dict(),
                    "preventive": (
                        []
                        if self.preventive is None
                        else self.preventive.snapshot()
                    ),
                },
            },
        )
