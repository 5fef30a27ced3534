"""From config to objects: supervised processes, checks, actions, targets.

The only place that knows both the config file's shape and the objects'
constructors, so neither depends on the other.
"""

from __future__ import annotations

import signal

from collections.abc import Callable, Mapping
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from selfhealing.actions import (
    CommandAction,
    HttpAction,
    RemediationAction,
    RestartProcessAction,
)
from selfhealing.actions.llm import LLMAction
from selfhealing.breaker import CircuitBreaker
from selfhealing.checks import (
    CommandCheck,
    DiskCheck,
    HealthCheck,
    HttpCheck,
    HttpSession,
    MemoryCheck,
    ProcessCheck,
    TcpCheck,
)
from selfhealing.clock import Clock, utc_iso
from selfhealing.config import (
    ActionConfig,
    BreakerConfig,
    CheckConfig,
    CommandActionConfig,
    CommandCheckConfig,
    Config,
    DiskCheckConfig,
    HttpActionConfig,
    HttpCheckConfig,
    LlmActionConfig,
    MemoryCheckConfig,
    ProcessCheckConfig,
    ProcessConfig,
    RestartProcessActionConfig,
    TcpCheckConfig,
)
from selfhealing.engine import TARGET_BREAKER_PREFIX, SelfHealingEngine
from selfhealing.events import EventBus
from selfhealing.llm.advisor import LLMAdvisor
from selfhealing.llm.evidence import Evidence
from selfhealing.registry import CircuitBreakerRegistry
from selfhealing.supervisor import ManagedProcess, ProcessSupervisor
from selfhealing.targets import CheckHook, Target


__all__ = [
    "build_action",
    "build_check",
    "build_process",
    "build_targets",
    "evidence_of",
    "process_stats",
    "targets_by_process",
]

# A crashed process with no target of its own is watched by this one.
IMPLICIT_INTERVAL = 10.0


def build_process(
    config: ProcessConfig,
    *,
    directory: Path,
    log_dir: Path,
    state_dir: Path,
    clock: Clock,
) -> ManagedProcess:
    cwd = directory / config.cwd if config.cwd else directory
    return ManagedProcess(
        config.name,
        config.command,
        cwd=cwd,
        env=config.env,
        stop_signal=signal.Signals[config.stop_signal],
        stop_timeout=config.stop_timeout,
        autostart=config.autostart,
        log_dir=log_dir,
        state_dir=state_dir,
        clock=clock,
    )


def build_check(  # noqa: PLR0911 (one return per check type)
    config: CheckConfig,
    *,
    directory: Path,
    session: HttpSession,
    supervisor: ProcessSupervisor,
    clock: Clock,
) -> HealthCheck:
    timeout = config.timeout
    if isinstance(config, HttpCheckConfig):
        return HttpCheck(
            config.url,
            timeout=timeout,
            method=config.method,
            expected_status=config.expected_status,
            body_contains=config.body_contains,
            body_regex=config.body_regex,
            headers=config.headers,
            verify_tls=config.verify_tls,
            session=session,
            clock=clock,
        )
    if isinstance(config, TcpCheckConfig):
        return TcpCheck(config.host, config.port, timeout=timeout, clock=clock)
    if isinstance(config, ProcessCheckConfig):
        if config.process is not None:
            process = supervisor.get(config.process)
            return ProcessCheck(
                is_running=_pid_of(process), timeout=timeout, clock=clock
            )
        return ProcessCheck(
            pid_file=directory / config.pid_file if config.pid_file else None,
            match=config.match,
            timeout=timeout,
            clock=clock,
        )
    if isinstance(config, CommandCheckConfig):
        return CommandCheck(
            config.command,
            timeout=timeout,
            expected_exit_code=config.expected_exit_code,
            cwd=directory / config.cwd if config.cwd else directory,
            env=config.env,
            clock=clock,
        )
    if isinstance(config, DiskCheckConfig):
        return DiskCheck(
            directory / config.path,
            max_used_percent=config.max_used_percent,
            max_inodes_percent=config.max_inodes_percent,
            timeout=timeout,
            clock=clock,
        )
    assert isinstance(config, MemoryCheckConfig)  # noqa: S101 (exhaustive)
    return MemoryCheck(
        max_used_percent=config.max_used_percent, timeout=timeout, clock=clock
    )


def build_action(
    config: ActionConfig,
    *,
    directory: Path,
    session: HttpSession,
    supervisor: ProcessSupervisor,
    clock: Clock,
) -> RemediationAction:
    if isinstance(config, RestartProcessActionConfig):
        return RestartProcessAction(
            config.name,
            supervisor.get(config.process),
            timeout=config.timeout,
            clock=clock,
        )
    if isinstance(config, CommandActionConfig):
        return CommandAction(
            config.name,
            config.command,
            timeout=config.timeout,
            expected_exit_code=config.expected_exit_code,
            cwd=directory / config.cwd if config.cwd else directory,
            env=config.env,
            clock=clock,
        )
    if not isinstance(config, HttpActionConfig):
        raise TypeError(f"{config.type} actions are built per target")
    return HttpAction(
        config.name,
        config.url,
        method=config.method,
        headers=config.headers,
        body=config.body,
        expected_status=config.expected_status,
        timeout=config.timeout,
        session=session,
        clock=clock,
    )


def build_targets(
    config: Config,
    *,
    directory: Path,
    engine: SelfHealingEngine,
    advisor: LLMAdvisor | None = None,
    registry: CircuitBreakerRegistry,
    supervisor: ProcessSupervisor,
    session: HttpSession,
    detection: Callable[[], bool],
    supervision: Callable[[], bool],
    clock: Clock,
    bus: EventBus,
    on_check: CheckHook | None = None,
) -> dict[str, Target]:
    """Every configured target, plus one per process nobody watches (these
    only run while *supervision*, the process-monitoring flag, is on).
    *on_check* is each target's hook (the metrics)."""
    actions = {
        a.name: build_action(
            a,
            directory=directory,
            session=session,
            supervisor=supervisor,
            clock=clock,
        )
        for a in config.actions
        if not isinstance(a, LlmActionConfig)
    }
    asks = {
        a.name: a for a in config.actions if isinstance(a, LlmActionConfig)
    }
    targets: dict[str, Target] = {}

    def rung(target: str, name: str) -> RemediationAction:
        ask = asks.get(name)
        if ask is None:
            return actions[name]
        # One per target: the advisor must see this target's evidence.
        return LLMAction(
            ask.name,
            advisor,
            [actions[allowed] for allowed in ask.allowed],
            lambda: evidence_of(targets[target], supervisor),
            timeout=ask.timeout,
            clock=clock,
        )

    for spec in config.targets:
        check = spec.check
        targets[spec.name] = Target(
            spec.name,
            build_check(
                check,
                directory=directory,
                session=session,
                supervisor=supervisor,
                clock=clock,
            ),
            [rung(spec.name, name) for name in spec.actions],
            engine=engine,
            breaker=_target_breaker(registry, spec.name, spec.breaker),
            interval=check.interval,
            initial_delay=check.initial_delay,
            failure_threshold=check.failure_threshold,
            success_threshold=check.success_threshold,
            verify_timeout=spec.effective_verify_timeout,
            verify_settle=spec.verify_settle,
            relapse_window=spec.relapse_window,
            detection=detection,
            clock=clock,
            bus=bus,
            on_check=on_check,
        )
    watched = targets_by_process(config, targets)
    for process in supervisor:
        # A process that does not start with the daemon is started by
        # hand; watching it would start it at its first probe.
        if watched.get(process.name) or not process.autostart:
            continue
        name = (
            process.name
            if process.name not in targets
            else f"process:{process.name}"
        )
        targets[name] = Target(
            name,
            ProcessCheck(is_running=_pid_of(process), clock=clock),
            [
                RestartProcessAction(
                    f"restart-{process.name}", process, clock=clock
                )
            ],
            engine=engine,
            breaker=_target_breaker(registry, name, None),
            interval=IMPLICIT_INTERVAL,
            failure_threshold=1,
            detection=lambda: detection() and supervision(),
            clock=clock,
            bus=bus,
            on_check=on_check,
        )
    return targets


def targets_by_process(
    config: Config, targets: Mapping[str, Target]
) -> dict[str, list[Target]]:
    """Which targets a crash of each process makes unhealthy: those whose
    ladder restarts it, and those whose check watches it."""
    checked = {
        spec.name: spec.check.process
        for spec in config.targets
        if isinstance(spec.check, ProcessCheckConfig) and spec.check.process
    }
    found: dict[str, list[Target]] = {}
    for name, target in targets.items():
        processes = {
            action.process.name
            for action in target.ladder
            if isinstance(action, RestartProcessAction)
        }
        if name in checked:
            processes.add(checked[name])
        for process in sorted(processes):
            found.setdefault(process, []).append(target)
    return found


def evidence_of(target: Target, supervisor: ProcessSupervisor) -> Evidence:
    """What the LLM advisor is shown about *target* (raw: it is fenced and
    redacted when rendered)."""
    checks = [
        f"{utc_iso(r.at)} {'ok' if r.ok else 'FAIL'} "
        f"{r.latency * 1000:.1f}ms {r.detail}"
        for r in target.recent
    ]
    actions = [
        f"{utc_iso(a.at)} {a.action} {'ok' if a.ok else 'failed'}: {a.detail}"
        for a in target.actions
    ]
    processes = [
        action.process
        for action in target.ladder
        if isinstance(action, RestartProcessAction)
    ]
    if not processes and target.name in supervisor:
        processes = [supervisor.get(target.name)]
    stats: dict[str, object] = {}
    lines: list[str] = []
    if processes:
        process = processes[0]
        lines = process.tail(50)
        stats = {**process.snapshot().to_dict(), **process_stats(process.pid)}
    return Evidence(
        target=target.name,
        health=f"{target.health} ({target.detail or 'no detail'})",
        checks=checks,
        log_lines=lines,
        process=stats,
        actions=actions,
    )


def process_stats(pid: int | None) -> dict[str, object]:
    """RSS, CPU, descriptors, threads and children of a process tree."""
    if pid is None:
        return {}
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            return {
                "rssBytes": process.memory_info().rss,
                "cpuPercent": process.cpu_percent(interval=None),
                "openFds": process.num_fds(),
                "threads": process.num_threads(),
                "children": len(process.children(recursive=True)),
            }
    except (psutil.Error, OSError):
        return {}


def _target_breaker(
    registry: CircuitBreakerRegistry, name: str, config: BreakerConfig | None
) -> CircuitBreaker:
    """``target:<name>``: isolates one target's failures.

    Settings from ``[breakers."target:<name>"]`` win, then the target's
    ``[targets.breaker]``; without either it never goes PERMANENT_OPEN:
    the main breaker and dormant mode already stop a runaway, and resuming
    must be enough to heal.
    """
    breaker_name = f"{TARGET_BREAKER_PREFIX}{name}"
    if not registry.declared(breaker_name):
        settings = (
            config.model_dump()
            if config is not None
            else {"permanent_after_trips": 0}
        )
        registry.configure(breaker_name, **settings)
    return registry.get_or_create(breaker_name)


def _pid_of(process: ManagedProcess) -> Callable[[], int | None]:
    def pid() -> int | None:
        return process.pid if process.running else None

    return pid
