"""ResourceMonitor: what the supervised processes, the daemon and the host use.

One :meth:`ResourceMonitor.sample` pass (sync; the daemon registers it as
an interval task, which runs it in a worker thread, so a hung network
mount stalls the sampler and not the loop) reads:

* each supervised process's whole tree: RSS summed, CPU percent of one
  core summed, open fds, threads, and how many descendants it has;
* the daemon itself the same way, but its own figures only (its tree is
  the supervised processes), plus its descendant count;
* the host: memory and swap used percent, the load averages, and each
  configured disk path's used percent (as ``df`` counts it) and inode
  used percent.

Event-loop lag comes from a separate probe, :meth:`probe_loop_lag`, an
async method the daemon registers as a task: it schedules a callback and
measures, on the injected clock, how late it runs.

Every reading is appended to a bounded :class:`~selfhealing.forecast.Series`
named as ``selfhealing.forecast`` documents (``process:web:rss``,
``daemon.loop_lag``, ``host.memory``, ``disk:/var``, ...). A process whose
pid changed, or that stopped, has its series reset: a restart starts over.

Entry points for the daemon: :meth:`ResourceMonitor.register` (the two
interval tasks), :meth:`~ResourceMonitor.snapshot` (the status
``resources`` section and, through ``metrics()``, the /metrics gauges),
:meth:`~ResourceMonitor.daemon_health` (the leak and lag findings), and
:meth:`~ResourceMonitor.validate` and :meth:`~ResourceMonitor.evaluate`
for ``[[preventive]]`` rules.

Cheap by construction: one scan of the process table per pass (not one per
tree), psutil Process objects cached per pid (which also keeps CPU percent
meaningful: psutil measures it since the previous call on the same object),
readings taken under ``oneshot()``, and rings of fixed arrays. CPU of a
process is first reported on its second pass. ``bench/resource_sampling.py``
measures it: about 7.5 ms of CPU a pass for 50 supervised trees of two
processes each (plus the daemon, the host and two disks), 0.15 % of one
core at one pass every 5 s; the scan of the process table grows with the
number of processes on the host (about 2 ms for 230 here).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple, Protocol

import psutil  # type: ignore[import-untyped, unused-ignore]

from selfhealing.clock import Clock, system_clock, utc_iso
from selfhealing.clock import seconds as _seconds
from selfhealing.exceptions import ConfigError, UnknownNameError
from selfhealing.forecast import (
    MIN_QUALITY,
    PROCESS_METRICS,
    PreventiveRule,
    Series,
    Trigger,
    Unit,
    fit_trend,
    format_value,
    process_series,
)


__all__ = [
    "METRIC_HELP",
    "SAMPLE_TASK",
    "DaemonHealth",
    "DiskUsage",
    "HostUsage",
    "IntervalRegistry",
    "MetricSample",
    "ProcessLike",
    "ProcessUsage",
    "ResourceFinding",
    "ResourceMonitor",
    "ResourceSnapshot",
]

_log = logging.getLogger("selfhealing.resources")

#: The task id :meth:`ResourceMonitor.register` uses.
SAMPLE_TASK = "resources.sample"
_TASK_KIND = "monitor"

#: A daemon RSS trend steeper than this, in bytes per second, and
#: consistent (tau >= forecast.MIN_QUALITY), over the leak window is a leak:
#: 10 MB an hour.
LEAK_SLOPE = 10e6 / 3600
#: Loop lag at the 99th percentile above this many seconds is lagging.
LAG_THRESHOLD = 0.1
_LEAK_MIN_SAMPLES = 10
_LAG_MIN_SAMPLES = 5
_DAEMON = "selfhealing"
_LOAD = ("host.load1", "host.load5", "host.load15")


class ProcessLike(Protocol):
    """What the monitor reads of a supervised process (ManagedProcess)."""

    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int | None:
        """The live child's pid, or None when it is not running."""


class IntervalRegistry(Protocol):
    """The part of BackgroundTaskManager that :meth:`register` uses."""

    def register_interval(
        self,
        task_id: str,
        fn: Callable[[], object],
        interval: float | timedelta,
        *,
        initial_delay: float | timedelta | None = None,
        kind: str = "task",
    ) -> None: ...


# --- records -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """The latest readings of one process tree (None: not measured yet)."""

    name: str
    pid: int | None
    rss: float | None
    cpu: float | None
    fds: int | None
    threads: int | None
    children: int | None

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "name": self.name,
            "pid": self.pid,
            "rssBytes": self.rss,
            "cpuPercent": self.cpu,
            "openFds": self.fds,
            "threads": self.threads,
            "children": self.children,
        }


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """One configured disk path: percent of space and of inodes used."""

    path: str
    used_percent: float | None
    inodes_percent: float | None

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "path": self.path,
            "usedPercent": self.used_percent,
            "inodesPercent": self.inodes_percent,
        }


@dataclass(frozen=True, slots=True)
class HostUsage:
    """The host's latest readings."""

    memory_percent: float | None
    swap_percent: float | None
    load1: float | None
    load5: float | None
    load15: float | None
    disks: tuple[DiskUsage, ...]

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "memoryPercent": self.memory_percent,
            "swapPercent": self.swap_percent,
            "load": [self.load1, self.load5, self.load15],
            "disks": [disk.to_dict() for disk in self.disks],
        }


@dataclass(frozen=True, slots=True)
class ResourceFinding:
    """Something wrong with the daemon's own resources.

    *kind* is ``leak`` or ``lag``; the status turns each finding into a
    ``WARNING: <issue>`` with *recommendation*.
    """

    kind: str
    issue: str
    recommendation: str

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "kind": self.kind,
            "issue": self.issue,
            "recommendation": self.recommendation,
        }


@dataclass(frozen=True, slots=True)
class DaemonHealth:
    """Whether the daemon leaks (its RSS trend) or lags (its loop).

    *rss_slope* is bytes per second over the leak window and
    *rss_quality* its Kendall tau; *loop_lag_p99* is seconds over the lag
    window. None where there are too few samples to say.
    """

    rss: float | None
    rss_slope: float | None
    rss_quality: float | None
    leaking: bool
    loop_lag: float | None
    loop_lag_p99: float | None
    lagging: bool
    findings: tuple[ResourceFinding, ...]

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "rssBytes": self.rss,
            "rssSlopePerSecond": self.rss_slope,
            "rssQuality": self.rss_quality,
            "leaking": self.leaking,
            "loopLag": self.loop_lag,
            "loopLagP99": self.loop_lag_p99,
            "lagging": self.lagging,
            "findings": [finding.to_dict() for finding in self.findings],
        }


#: Every metric :meth:`ResourceSnapshot.metrics` yields (all gauges): help.
METRIC_HELP: Mapping[str, str] = {
    "selfheal_process_resident_memory_bytes": (
        "RSS of a supervised process tree"
    ),
    "selfheal_process_cpu_percent": (
        "CPU of a supervised process tree, percent of one core"
    ),
    "selfheal_process_open_fds": "Open fds of a supervised process tree",
    "selfheal_process_threads": "Threads of a supervised process tree",
    "selfheal_process_children": "Descendants of a supervised process",
    "selfheal_daemon_resident_memory_bytes": "RSS of the daemon",
    "selfheal_daemon_cpu_percent": "CPU of the daemon, percent of one core",
    "selfheal_daemon_open_fds": "Open fds of the daemon",
    "selfheal_daemon_threads": "Threads of the daemon",
    "selfheal_daemon_children": "Descendants of the daemon",
    "selfheal_daemon_loop_lag_seconds": "Latest event-loop lag",
    "selfheal_host_memory_used_percent": "Host memory used",
    "selfheal_host_swap_used_percent": "Host swap used",
    "selfheal_host_load": "Host load average",
    "selfheal_disk_used_percent": "Disk space used, as df counts it",
    "selfheal_disk_inodes_used_percent": "Disk inodes used",
}


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One gauge for /metrics; *name* is a key of ``METRIC_HELP``."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceSnapshot:
    """The monitor's latest readings, for the status ``resources`` section.

    *sampled_at* is the wall epoch of the last pass and *last_duration*
    the seconds it took.
    """

    enabled: bool
    interval: float
    ring: int
    passes: int
    sampled_at: float | None
    last_duration: float | None
    processes: tuple[ProcessUsage, ...]
    daemon: ProcessUsage
    host: HostUsage
    health: DaemonHealth

    def to_dict(self) -> dict[str, object]:
        """The camelCase shape used by the API and the status output."""
        return {
            "enabled": self.enabled,
            "interval": self.interval,
            "ring": self.ring,
            "passes": self.passes,
            "sampledAt": utc_iso(self.sampled_at),
            "lastDuration": self.last_duration,
            "processes": [usage.to_dict() for usage in self.processes],
            "daemon": {**self.daemon.to_dict(), **self.health.to_dict()},
            "host": self.host.to_dict(),
        }

    def metrics(self) -> tuple[MetricSample, ...]:
        """Every known reading as a gauge (unknown ones are left out)."""
        found: list[MetricSample] = []

        def add(name: str, value: float | None, **labels: str) -> None:
            if value is not None:
                found.append(
                    MetricSample(name, float(value), tuple(labels.items()))
                )

        for usage in self.processes:
            _usage_metrics(add, "process", usage, process=usage.name)
        _usage_metrics(add, "daemon", self.daemon)
        add("selfheal_daemon_loop_lag_seconds", self.health.loop_lag)
        host = self.host
        add("selfheal_host_memory_used_percent", host.memory_percent)
        add("selfheal_host_swap_used_percent", host.swap_percent)
        for period, load in zip(
            ("1m", "5m", "15m"),
            (host.load1, host.load5, host.load15),
            strict=True,
        ):
            add("selfheal_host_load", load, period=period)
        for disk in host.disks:
            add(
                "selfheal_disk_used_percent",
                disk.used_percent,
                path=disk.path,
            )
            add(
                "selfheal_disk_inodes_used_percent",
                disk.inodes_percent,
                path=disk.path,
            )
        return tuple(found)


def _usage_metrics(
    add: Callable[..., None], prefix: str, usage: ProcessUsage, **labels: str
) -> None:
    add(f"selfheal_{prefix}_resident_memory_bytes", usage.rss, **labels)
    add(f"selfheal_{prefix}_cpu_percent", usage.cpu, **labels)
    add(f"selfheal_{prefix}_open_fds", usage.fds, **labels)
    add(f"selfheal_{prefix}_threads", usage.threads, **labels)
    add(f"selfheal_{prefix}_children", usage.children, **labels)


# --- the monitor -----------------------------------------------------------------


class _Usage(NamedTuple):
    rss: float
    cpu: float | None  # None until the root has a previous reading
    fds: int | None  # None when some member's fds cannot be read
    threads: int
    children: int


def _always() -> bool:
    return True


def _nothing() -> Iterable[ProcessLike]:
    return ()


class ResourceMonitor:
    """Samples resources into bounded series; see the module docstring.

    *processes* returns the supervised processes at each pass (a
    ProcessSupervisor iterates as one); *enabled* is read at each pass and
    probe (FEATURE_PROCESS_MONITORING_ENABLED): while it answers False
    nothing is sampled, no psutil call is made, and the series keep what
    they held. *interval* is what :meth:`register` schedules; *ring* is
    the number of samples each series keeps.
    """

    def __init__(
        self,
        *,
        clock: Clock = system_clock,
        interval: float | timedelta = 5.0,
        ring: int = 720,
        disk_paths: Sequence[str | os.PathLike[str]] = (),
        processes: Callable[[], Iterable[ProcessLike]] = _nothing,
        enabled: Callable[[], bool] = _always,
        lag_window: float | timedelta = 300.0,
        lag_threshold: float | timedelta = LAG_THRESHOLD,
        leak_window: float | timedelta = 3600.0,
        leak_slope: float = LEAK_SLOPE,
    ) -> None:
        self.interval = _positive(interval, "interval")
        self.lag_window = _positive(lag_window, "lag_window")
        self.lag_threshold = _positive(lag_threshold, "lag_threshold")
        self.leak_window = _positive(leak_window, "leak_window")
        self.leak_slope = _positive(leak_slope, "leak_slope")
        Series(ring)  # validates the capacity, with the same message
        self.ring = ring
        self.disk_paths = tuple(os.fspath(path) for path in disk_paths)
        self._clock = clock
        self._processes = processes
        self._enabled = enabled
        self._series: dict[str, Series] = {}
        self._pids: dict[str, int | None] = {}  # supervised name -> pid
        self._procs: dict[int, psutil.Process] = {}
        self._me: psutil.Process | None = None
        self._disk_errors: dict[str, str] = {}
        self._lock = threading.Lock()  # one pass at a time
        self._index_lock = threading.Lock()  # _series and _pids, briefly
        self._passes = 0
        self._sampled_at: float | None = None
        self._last_duration: float | None = None
        self._health: tuple[object, DaemonHealth] | None = None

    # -- the daemon's entry points ------------------------------------------

    def register(self, tasks: IntervalRegistry) -> str:
        """Register one interval task: the lag probe, then a sampling pass.

        The probe runs on the loop (that is what it measures); the pass,
        which is sync, in a worker thread, so a hung disk stalls only the
        sampler. It runs at once and then every *interval*. Returns the
        task id.
        """
        tasks.register_interval(
            SAMPLE_TASK,
            self.tick,
            self.interval,
            initial_delay=0,
            kind=_TASK_KIND,
        )
        return SAMPLE_TASK

    async def tick(self) -> None:
        """One round: how late the loop runs, then every resource."""
        if not self._enabled():
            return
        await self.probe_loop_lag()
        await asyncio.to_thread(self.sample)

    def sample(self) -> bool:
        """Take one pass; False (and nothing read) while disabled."""
        if not self._enabled():
            return False
        with self._lock:
            clock = self._clock
            started = clock.monotonic()
            supervised = [(p.name, p.pid) for p in self._processes()]
            index = _children_index(_parent_map())
            seen: set[int] = set()
            for name, pid in supervised:
                self._sample_process(name, pid, index, seen, started)
            self._forget_gone({name for name, _ in supervised})
            self._sample_daemon(index, seen, started)
            self._sample_host(started)
            for pid in self._procs.keys() - seen:
                del self._procs[pid]
            self._passes += 1
            self._sampled_at = clock.time()
            self._last_duration = clock.monotonic() - started
        _log.debug(
            "sampled %d processes in %.1f ms",
            len(supervised),
            self._last_duration * 1000,
        )
        return True

    async def probe_loop_lag(self) -> float | None:
        """Measure how late a callback scheduled now runs, in seconds.

        Appends to ``daemon.loop_lag`` and returns the lag; None (and
        nothing measured) while disabled.
        """
        if not self._enabled():
            return None
        loop = asyncio.get_running_loop()
        ran: asyncio.Future[float] = loop.create_future()
        started = self._clock.monotonic()
        loop.call_soon(_stamp, ran, self._clock)
        ran_at = await ran
        lag = max(ran_at - started, 0.0)
        self._get("daemon.loop_lag").append(ran_at, lag)
        return lag

    # -- preventive rules -------------------------------------------------

    def validate(self, rule: PreventiveRule) -> None:
        """Refuse a rule this monitor can never serve (ConfigError).

        Its series must be one the monitor samples (a disk path among
        *disk_paths*), and the history it needs (``held_for``, or the
        forecast window) must fit in the ring at this interval.
        """
        kind, _, path = rule.series.partition(":")
        if kind in {"disk", "inodes"} and path not in self.disk_paths:
            raise ConfigError(
                f"rule {rule.name!r} watches {rule.series!r}, but {path!r} "
                f"is not a monitored disk path "
                f"(known: {', '.join(self.disk_paths) or 'none'})",
                where="preventive",
            )
        span = self.ring * self.interval
        if rule.rule.history > span:
            raise ConfigError(
                f"rule {rule.name!r} needs {rule.rule.history:g} s of "
                f"samples, but {self.ring} samples every {self.interval:g} s "
                f"hold {span:g} s; raise the ring or shorten the rule",
                where="preventive",
            )

    def evaluate(
        self, rules: Iterable[PreventiveRule], *, enabled: bool
    ) -> list[Trigger]:
        """Each rule's decision now, on its series.

        *enabled* is FEATURE_PREVENTIVE_HEALING_ENABLED: when False no
        trigger says ACT (see :meth:`PreventiveRule.evaluate`). A series
        not sampled yet reads as empty, so its rule stays QUIET.
        """
        now, wall = self._clock.monotonic(), self._clock.time()
        triggers = []
        for rule in rules:
            series = self._series.get(rule.series)
            if series is None:
                series = Series(2, name=rule.series)
            triggers.append(
                rule.evaluate(series, now=now, wall_now=wall, enabled=enabled)
            )
        return triggers

    # -- reading ------------------------------------------------------------

    def series(self, name: str) -> Series:
        """The series called *name* (``process:web:rss``, ``host.memory``).

        Raises UnknownNameError when nothing was ever sampled under it.
        """
        found = self._series.get(name)
        if found is None:
            raise UnknownNameError("series", name, list(self._series))
        return found

    def names(self) -> list[str]:
        """Every series name sampled so far, sorted."""
        with self._index_lock:
            return sorted(self._series)

    def snapshot(self) -> ResourceSnapshot:
        """The latest readings, for the status and /metrics."""
        with self._index_lock:
            supervised = sorted(self._pids.items())
        processes = tuple(
            self._usage(name, pid, f"process:{name}:")
            for name, pid in supervised
        )
        daemon = self._usage(_DAEMON, os.getpid(), "daemon.")
        disks = tuple(
            DiskUsage(
                path,
                self._latest(f"disk:{path}"),
                self._latest(f"inodes:{path}"),
            )
            for path in self.disk_paths
        )
        load1, load5, load15 = (self._latest(name) for name in _LOAD)
        host = HostUsage(
            self._latest("host.memory"),
            self._latest("host.swap"),
            load1,
            load5,
            load15,
            disks,
        )
        return ResourceSnapshot(
            enabled=self._enabled(),
            interval=self.interval,
            ring=self.ring,
            passes=self._passes,
            sampled_at=self._sampled_at,
            last_duration=self._last_duration,
            processes=processes,
            daemon=daemon,
            host=host,
            health=self.daemon_health(),
        )

    def daemon_health(self) -> DaemonHealth:
        """Whether the daemon leaks or lags, with a finding for each.

        Leaking: over the leak window (at least half of it sampled), a
        Theil-Sen RSS slope of at least *leak_slope* with Kendall's tau
        of at least ``forecast.MIN_QUALITY``. Lagging: the 99th percentile
        of the loop lag over the lag window above *lag_threshold*.
        Computed at most once per pass and probe.
        """
        rss_series = self._series.get("daemon.rss")
        lag_series = self._series.get("daemon.loop_lag")
        key = (
            None if rss_series is None else rss_series.latest,
            None if lag_series is None else lag_series.latest,
        )
        cached = self._health
        if cached is not None and cached[0] == key:
            return cached[1]
        now = self._clock.monotonic()
        health = self._judge_health(rss_series, lag_series, now)
        self._health = (key, health)
        return health

    # -- internals ------------------------------------------------------------

    def _get(self, name: str) -> Series:
        found = self._series.get(name)
        if found is None:
            with self._index_lock:
                found = self._series.setdefault(
                    name, Series(self.ring, name=name)
                )
        return found

    def _latest(self, name: str) -> float | None:
        found = self._series.get(name)
        latest = None if found is None else found.latest
        return None if latest is None else latest[1]

    def _usage(self, name: str, pid: int | None, prefix: str) -> ProcessUsage:
        def count(metric: str) -> int | None:
            value = self._latest(prefix + metric)
            return None if value is None else round(value)

        return ProcessUsage(
            name=name,
            pid=pid,
            rss=self._latest(prefix + "rss"),
            cpu=self._latest(prefix + "cpu"),
            fds=count("fds"),
            threads=count("threads"),
            children=count("children"),
        )

    def _sample_process(
        self,
        name: str,
        pid: int | None,
        index: Mapping[int, list[int]],
        seen: set[int],
        now: float,
    ) -> None:
        if name in self._pids and self._pids[name] != pid:
            _log.debug("process %s: pid %s -> %s", name, self._pids[name], pid)
            for metric in PROCESS_METRICS:
                found = self._series.get(process_series(name, metric))
                if found is not None:
                    found.reset()
        with self._index_lock:
            self._pids[name] = pid
        if pid is None:
            return
        usage = self._measure(_tree(pid, index), seen)
        if usage is not None:
            self._record(f"process:{name}:", usage, now)

    def _sample_daemon(
        self, index: Mapping[int, list[int]], seen: set[int], now: float
    ) -> None:
        me = self._me
        if me is None:
            me = self._me = psutil.Process()
            self._procs[me.pid] = me
        usage = self._measure([me.pid], seen)
        if usage is not None:
            descendants = len(_tree(me.pid, index)) - 1
            self._record("daemon.", usage._replace(children=descendants), now)

    def _record(self, prefix: str, usage: _Usage, now: float) -> None:
        self._get(prefix + "rss").append(now, usage.rss)
        if usage.cpu is not None:
            self._get(prefix + "cpu").append(now, usage.cpu)
        if usage.fds is not None:
            self._get(prefix + "fds").append(now, usage.fds)
        self._get(prefix + "threads").append(now, usage.threads)
        self._get(prefix + "children").append(now, usage.children)

    def _measure(self, pids: list[int], seen: set[int]) -> _Usage | None:
        """Sum a tree's readings; None when its root is gone."""
        rss = cpu = 0.0
        fds: int | None = 0
        threads = members = 0
        root_primed = False
        for position, pid in enumerate(pids):
            proc = self._procs.get(pid)
            primed = proc is not None
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    member_rss = proc.memory_info().rss
                    percent = proc.cpu_percent(None)
                    member_threads = proc.num_threads()
                    member_fds = _fds(proc)
            except psutil.NoSuchProcess:  # also a zombie
                self._procs.pop(pid, None)
                if position == 0:
                    return None
                continue
            except psutil.AccessDenied:
                if position == 0:
                    _log.debug("cannot read process %d: access denied", pid)
                    return None
                continue
            seen.add(pid)
            members += 1
            rss += member_rss
            threads += member_threads
            if primed:
                cpu += percent
            if position == 0:
                root_primed = primed
            fds = (
                None if fds is None or member_fds is None else fds + member_fds
            )
        return _Usage(
            rss, cpu if root_primed else None, fds, threads, members - 1
        )

    def _forget_gone(self, names: set[str]) -> None:
        with self._index_lock:
            for name in self._pids.keys() - names:
                del self._pids[name]
                for metric in PROCESS_METRICS:
                    self._series.pop(process_series(name, metric), None)

    def _sample_host(self, now: float) -> None:
        self._get("host.memory").append(now, psutil.virtual_memory().percent)
        self._get("host.swap").append(now, psutil.swap_memory().percent)
        try:
            loads = os.getloadavg()
        except OSError:  # pragma: no cover (every supported Unix has it)
            loads = None
        if loads is not None:
            for name, load in zip(_LOAD, loads, strict=True):
                self._get(name).append(now, load)
        for path in self.disk_paths:
            self._sample_disk(path, now)

    def _sample_disk(self, path: str, now: float) -> None:
        try:
            stats = os.statvfs(path)
        except OSError as error:
            message = f"{type(error).__name__}: {error}"
            if self._disk_errors.get(path) != message:
                _log.warning("cannot read disk %s: %s", path, message)
            self._disk_errors[path] = message
            return
        if self._disk_errors.pop(path, None) is not None:
            _log.info("disk %s is readable again", path)
        # df's figure: blocks reserved for root count as neither.
        used = stats.f_blocks - stats.f_bfree
        room = used + stats.f_bavail
        self._get(f"disk:{path}").append(
            now, used / room * 100 if room else 0.0
        )
        if stats.f_files:  # btrfs and friends have no inode table
            inodes = (stats.f_files - stats.f_ffree) / stats.f_files * 100
            self._get(f"inodes:{path}").append(now, inodes)

    def _judge_health(
        self, rss: Series | None, lag: Series | None, now: float
    ) -> DaemonHealth:
        current = None if rss is None or rss.latest is None else rss.latest[1]
        trend = None if rss is None else self._rss_trend(rss, now)
        leak = (
            None
            if trend is None or current is None
            else self._leak(current, *trend)
        )
        lags = [] if lag is None else lag.window(self.lag_window, now)
        p99 = _p99([value for _, value in lags])
        lagging = None if p99 is None else self._lagging(p99)
        return DaemonHealth(
            rss=current,
            rss_slope=None if trend is None else trend[0],
            rss_quality=None if trend is None else trend[1],
            leaking=leak is not None,
            loop_lag=lags[-1][1] if lags else None,
            loop_lag_p99=p99,
            lagging=lagging is not None,
            findings=tuple(f for f in (leak, lagging) if f is not None),
        )

    def _rss_trend(
        self, rss: Series, now: float
    ) -> tuple[float, float] | None:
        """(slope, tau) of the daemon's RSS over the leak window, if known."""
        points = rss.window(self.leak_window, now)
        if len(points) < _LEAK_MIN_SAMPLES:
            return None
        if points[-1][0] - points[0][0] < self.leak_window / 2:
            return None
        trend = fit_trend(points)
        return trend.slope, trend.tau

    def _leak(
        self, current: float, slope: float, quality: float
    ) -> ResourceFinding | None:
        if slope < self.leak_slope or quality < MIN_QUALITY:
            return None
        return ResourceFinding(
            "leak",
            f"the daemon's memory keeps growing: RSS "
            f"{format_value(current, Unit.BYTES)}, rising "
            f"{format_value(slope * 3600, Unit.BYTES)}/h over the last "
            f"{self.leak_window / 60:g} min",
            "Watch `selfheal status`; if the daemon's RSS keeps rising, "
            "restart it at a quiet moment and report the leak with the "
            "DEBUG logs",
        )

    def _lagging(self, p99: float) -> ResourceFinding | None:
        if p99 <= self.lag_threshold:
            return None
        return ResourceFinding(
            "lag",
            f"the daemon's event loop lags: p99 "
            f"{format_value(p99, Unit.SECONDS)} over the last "
            f"{self.lag_window / 60:g} min (limit "
            f"{format_value(self.lag_threshold, Unit.SECONDS)})",
            "Look for blocking work on the event loop "
            "(DEBUG=self-healing:tasks shows slow tasks); fewer checks or "
            "longer intervals relieve it",
        )

    def __repr__(self) -> str:
        return (
            f"ResourceMonitor(interval={self.interval}, "
            f"series={len(self._series)}, passes={self._passes})"
        )


def _p99(values: list[float]) -> float | None:
    """The 99th percentile (nearest rank), once there are enough values."""
    if len(values) < _LAG_MIN_SAMPLES:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def _stamp(future: asyncio.Future[float], clock: Clock) -> None:
    if not future.done():
        future.set_result(clock.monotonic())


def _fds(proc: psutil.Process) -> int | None:
    try:
        return int(proc.num_fds())
    except psutil.AccessDenied:
        return None


def _parent_map() -> dict[int, int]:
    """``{pid: ppid}`` of every process, from one scan of the table.

    psutil's own ``children()`` rescans the whole table at each call; one
    scan per pass serves every tree.
    """
    try:
        scan = psutil._ppid_map  # noqa: SLF001 (the scan children() uses)
    except AttributeError:  # pragma: no cover (psutil has had it for years)
        return {
            proc.pid: proc.info["ppid"]
            for proc in psutil.process_iter(["ppid"])
        }
    return dict(scan())


def _children_index(parents: Mapping[int, int]) -> dict[int, list[int]]:
    index: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        if pid != ppid:
            index.setdefault(ppid, []).append(pid)
    return index


def _tree(root: int, index: Mapping[int, list[int]]) -> list[int]:
    """*root* and its descendants, root first (cycles from pid reuse cut)."""
    members = [root]
    seen = {root}
    position = 0
    while position < len(members):
        for child in index.get(members[position], ()):
            if child not in seen:
                seen.add(child)
                members.append(child)
        position += 1
    return members


def _positive(value: float | timedelta, name: str) -> float:
    result = _seconds(value, name=name)
    if not math.isfinite(result) or result <= 0:
        raise ConfigError(f"must be > 0 and finite, got {value!r}", where=name)
    return result
