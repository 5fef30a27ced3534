"""``selfheal watch``: the guide's step 5, live on a terminal.

After a recovery the guide watches ``GET /api/status`` every minute for at
least half an hour: ``consecutiveFailures`` should stay 0 → 0 → 0, and a
rise (0 → 1 → 2 → 3) sends the operator back to step 2. ``watch`` asks the
daemon once per interval and keeps a :class:`Trend` of the answers. On an
interactive terminal it redraws one view in place (:func:`render_view`) and
ticks its countdown every second; anywhere else (a pipe, ``| tee``, a test)
it prints one greppable line per sample (:func:`print_line`). Either way it
ends with :func:`print_summary`, what changed while it watched, and exits
with the worst status seen.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from selfhealing.cli import _client
from selfhealing.cli._client import (
    EXIT_UNREACHABLE,
    DaemonClient,
    DaemonError,
    UnreachableError,
    UrlOption,
    session,
    stdout,
)
from selfhealing.cli._status import (
    LOUD,
    STATUS_STYLES,
    cell,
    human_ms,
    local_time,
    make_table,
    records,
    section,
    status_exit,
    target_health,
    task_summary,
)
from selfhealing.clock import system_clock


__all__ = [
    "ABSENT",
    "Sample",
    "Trend",
    "print_line",
    "print_summary",
    "render_view",
    "sparkline",
    "watch",
]

#: A breaker's or target's state in an answer that does not list it.
ABSENT = "absent"
_TICK = 1.0  # seconds between two redraws of the countdown
_SPELLED = 12  # consecutiveFailures values spelled out in the view
_DRAWN = 30  # ... and drawn in its sparkline
_BARS = "▁▂▃▄▅▆▇█"
_ASCII_BARS = "_.-=+*#@"
_STEP_2 = "go back to step 2 (find the root cause)"
_RESUME = "fix the root cause, then: selfheal resume --reason TEXT"
_STATE_STYLES = {
    "CLOSED": "green",
    "HALF_OPEN": "yellow",
    "OPEN": "red",
    "PERMANENT_OPEN": LOUD,
    "healthy": "green",
    "unhealthy": LOUD,
    "unknown": "yellow",
    "running": "green",
    "exited": LOUD,
}


def _count(value: object) -> int:
    return (
        value if isinstance(value, int) and not isinstance(value, bool) else 0
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _hms(epoch: float) -> str:
    return local_time(epoch, "%H:%M:%S")


@dataclass(frozen=True, slots=True)
class Sample:
    """One answer, reduced to what ``watch`` compares between answers."""

    at: float  # wall epoch when it was asked for
    status: str
    failures: int
    dormant: bool
    dormant_reason: str | None
    resume_reason: str | None
    breakers: Mapping[str, str]
    targets: Mapping[str, str]
    attempts: int
    succeeded: int
    failed: int

    @classmethod
    def read(cls, document: Mapping[str, Any], at: float) -> Sample:
        """The parts of a ``GET /api/status`` document that ``watch`` follows."""
        engine = section(document, "selfHealing")
        return cls(
            at=at,
            status=str(document.get("status", "unknown")),
            failures=_count(engine.get("consecutiveFailures")),
            dormant=bool(engine.get("isDormant")),
            dormant_reason=_text(engine.get("dormantReason")),
            resume_reason=_text(section(engine, "lastResume").get("reason")),
            breakers={
                cell(b.get("name")): cell(b.get("state"))
                for b in records(document, "circuitBreakers")
            },
            targets={
                cell(t.get("name")): target_health(t)
                for t in records(document, "targets")
            },
            attempts=_count(engine.get("totalAttempts")),
            succeeded=_count(engine.get("successfulHealings")),
            failed=_count(engine.get("failedHealings")),
        )


def _follow(
    paths: dict[str, list[str]], now: Mapping[str, str], *, first: bool
) -> None:
    """Extend each name's path of states (ABSENT when an answer lacks it)."""
    for name in [*paths, *(n for n in now if n not in paths)]:
        path = paths.setdefault(name, [] if first else [ABSENT])
        state = now.get(name, ABSENT)
        if not path or path[-1] != state:
            path.append(state)


def _changed(paths: Mapping[str, Sequence[str]]) -> str:
    moves = [
        f"{name}: {' -> '.join(path)}"
        for name, path in paths.items()
        if len(path) > 1
    ]
    return "; ".join(moves) or "no change"


@dataclass(slots=True)
class Trend:
    """What ``watch`` has seen so far, as its view and summary need it."""

    samples: int = 0
    unreachable: int = 0
    document: dict[str, Any] = field(default_factory=dict)  # last answer
    first: Sample | None = None
    previous: Sample | None = None  # the answer before the last one
    last: Sample | None = None
    worst: Sample | None = None  # the first answer at the worst status
    missed: tuple[float, str] | None = None  # (when, why): last sample failed
    failures: list[int] = field(default_factory=list)
    rising: list[int] = field(default_factory=list)  # the current climb
    dormancy: list[tuple[float, bool, str | None]] = field(
        default_factory=list
    )  # (when, entered, reason) for each change between answers
    breakers: dict[str, list[str]] = field(default_factory=dict)
    targets: dict[str, list[str]] = field(default_factory=dict)

    def add(self, document: Mapping[str, Any], at: float) -> Sample:
        """Record an answer asked for at *at* (wall epoch)."""
        sample = Sample.read(document, at)
        before = self.last
        self.samples += 1
        self.missed = None
        self.document = dict(document)
        if before is None:
            self.first = sample
        elif sample.dormant != before.dormant:
            reason = (
                sample.dormant_reason
                if sample.dormant
                else sample.resume_reason
            )
            self.dormancy.append((at, sample.dormant, reason))
        if self.failures and sample.failures > self.failures[-1]:
            self.rising.append(sample.failures)
        else:
            self.rising = [sample.failures]
        self.failures.append(sample.failures)
        _follow(self.breakers, sample.breakers, first=before is None)
        _follow(self.targets, sample.targets, first=before is None)
        if self.worst is None or status_exit(sample.status) > status_exit(
            self.worst.status
        ):
            self.worst = sample
        self.previous, self.last = before, sample
        return sample

    def miss(self, reason: str, at: float) -> None:
        """Record a sample the daemon did not answer."""
        self.samples += 1
        self.unreachable += 1
        self.missed = (at, reason)

    @property
    def is_rising(self) -> bool:
        """Whether the last answer's consecutiveFailures rose."""
        return len(self.rising) > 1

    def exit_code(self) -> int:
        """The worst status seen (0/1/2); 3 if never answered."""
        if self.worst is None:
            return EXIT_UNREACHABLE if self.unreachable else 0
        return status_exit(self.worst.status)

    def headline(self) -> str:
        """Samples, the worst status, consecutiveFailures first -> last."""
        worst = self.worst.status if self.worst else "unknown (no answer)"
        failures = (
            f"{self.failures[0]} -> {self.failures[-1]}"
            if self.failures
            else "-"
        )
        return (
            f"{self.samples} sample{'' if self.samples == 1 else 's'} "
            f"({self.unreachable} unreachable), "
            f"worst status {worst}, consecutiveFailures {failures}"
        )

    def changes(self) -> list[tuple[str, str]]:
        """What changed while watching, as (what, how); [] if no answer."""
        first, last, worst = self.first, self.last, self.worst
        if first is None or last is None or worst is None:
            return []
        counters = zip(
            ("attempts", "succeeded", "failed"),
            (first.attempts, first.succeeded, first.failed),
            (last.attempts, last.succeeded, last.failed),
            strict=True,
        )
        worst_at = f"worst {worst.status} at {_hms(worst.at)}"
        failures = f"{first.failures} -> {last.failures}"
        return [
            ("status", f"{first.status} -> {last.status}, {worst_at}"),
            ("consecutiveFailures", f"{failures} (max {max(self.failures)})"),
            ("dormant", self._dormancy(first)),
            ("breakers", _changed(self.breakers)),
            ("targets", _changed(self.targets) if self.targets else "none"),
            (
                "healing",
                ", ".join(f"{k} {b - a:+d}" for k, a, b in counters),
            ),
        ]

    def _dormancy(self, first: Sample) -> str:
        if first.dormant and not self.dormancy:
            return f"throughout ({cell(first.dormant_reason)})"
        moves = []
        if first.dormant:
            moves.append(f"at start ({cell(first.dormant_reason)})")
        for at, entered, reason in self.dormancy:
            move = f"{'entered' if entered else 'left'} at {_hms(at)}"
            moves.append(f"{move} ({reason})" if reason else move)
        return ", ".join(moves) or "never"


def _rising(trend: Trend) -> str:
    chain = " -> ".join(str(n) for n in trend.rising)
    return f"consecutiveFailures rising: {chain}; {_STEP_2}"


def _strings(document: Mapping[str, Any], key: str) -> list[str]:
    value = document.get(key)
    return [str(v) for v in value] if isinstance(value, list) else []


# ------------------------------------------------------------ lines (a pipe)


def print_line(console: Console, trend: Trend) -> None:
    """The last sample as one line, then any warning it calls for."""
    if trend.missed is not None:
        at, reason = trend.missed
        console.print(
            Text(f"{_hms(at)} unreachable ({reason})", style="yellow")
        )
        return
    sample, before = trend.last, trend.previous
    if sample is None:
        return
    line = Text(f"{_hms(sample.at)} status=")
    line.append(
        sample.status, style=STATUS_STYLES.get(sample.status, "yellow")
    )
    line.append(f" consecutiveFailures={sample.failures}")
    if sample.dormant:
        line.append(" DORMANT", style=LOUD)
    console.print(line)
    warnings = [_rising(trend)] if trend.is_rising else []
    if sample.status == "critical" and (
        before is None or before.status != "critical"
    ):
        issues = "; ".join(_strings(trend.document, "issues"))
        warnings.append(f"status turned critical: {issues}")
    if sample.dormant and (before is None or not before.dormant):
        warnings.append(
            f"the engine is DORMANT ({cell(sample.dormant_reason)}); {_RESUME}"
        )
    for warning in warnings:
        console.print(Text(f"WARNING: {warning}", style=LOUD))


def print_summary(console: Console, trend: Trend, *, early: bool) -> None:
    """The headline (as greppable as ever), then one line per change."""
    ended = "watch stopped early" if early else "watch ended"
    console.print(f"{ended}: {trend.headline()}", markup=False, soft_wrap=True)
    for what, how in trend.changes():
        console.print(f"  {what + ':':<21}{how}", markup=False, soft_wrap=True)


# ------------------------------------------------------ the view (a terminal)


def sparkline(values: Sequence[int], *, unicode: bool = True) -> str:
    """The last values as bars, from lowest to highest seen."""
    bars = _BARS if unicode else _ASCII_BARS
    shown = [max(0, v) for v in values[-_DRAWN:]]
    top = max(shown, default=0) or 1
    return "".join(bars[round(v / top * (len(bars) - 1))] for v in shown)


def _duration(seconds: float) -> str:
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def _field(label: str, value: str | Text) -> Text:
    line = Text(f"{label:<11}")
    line.append(value if isinstance(value, Text) else Text(value))
    return line


def _state(value: object) -> Text:
    text = cell(value)
    return Text(text, style=_STATE_STYLES.get(text, ""))


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _banner(trend: Trend) -> Panel | None:
    """Whatever the operator must act on now, loudly; None if nothing."""
    lines: list[Text] = []
    if trend.missed is not None:
        at, reason = trend.missed
        shown = (
            f"; showing the answer from {_hms(trend.last.at)}"
            if trend.last is not None
            else ""
        )
        lines.append(
            Text(
                f"daemon unreachable at {_hms(at)} ({reason}){shown}",
                style="yellow",
            )
        )
    last = trend.last
    if trend.is_rising:
        lines.append(Text(_rising(trend), style=LOUD))
    if last is not None and last.status == "critical":
        issues = [
            issue.removeprefix("CRITICAL: ")
            for issue in _strings(trend.document, "issues")
            if issue.startswith("CRITICAL")
        ]
        lines.append(Text(f"status CRITICAL: {'; '.join(issues)}", style=LOUD))
    if last is not None and last.dormant:
        lines.append(
            Text(
                f"engine DORMANT ({cell(last.dormant_reason)}): {_RESUME}",
                style=LOUD,
            )
        )
    if not lines:
        return None
    loud = any(line.style == LOUD for line in lines)
    return Panel(
        Group(*lines),
        title="WARNING",
        title_align="left",
        border_style=LOUD if loud else "yellow",
    )


def _overall(document: Mapping[str, Any]) -> list[Text]:
    overall = str(document.get("status", "unknown"))
    status = Text().append(
        overall.upper(), style=STATUS_STYLES.get(overall, "yellow")
    )
    status.append(f"  ({cell(document.get('timestamp'))})")
    lines = [_field("Status", status)]
    issues = _strings(document, "issues")
    if not issues:
        lines.append(_field("Issues", "none"))
    else:
        lines.append(Text("Issues"))
        lines.extend(
            Text(
                f"  - {issue}",
                style=LOUD if issue.startswith("CRITICAL") else "yellow",
            )
            for issue in issues
        )
    recommendations = _strings(document, "recommendations")
    if recommendations:
        lines.append(Text("Recommendations"))
        lines.extend(Text(f"  -> {r}") for r in recommendations)
    return lines


def _engine(trend: Trend, *, unicode: bool) -> list[Text]:
    engine = section(trend.document, "selfHealing")
    if engine.get("isDormant"):
        state = Text("DORMANT", style=LOUD)
        state.append(
            f" since {cell(engine.get('dormantSince'))}: "
            f"{cell(engine.get('dormantReason'))}"
        )
    else:
        state = Text("active", style="green")
    enabled = "enabled" if engine.get("enabled", True) else "DISABLED"
    arrow, more = (" → ", "… ") if unicode else (" -> ", "... ")
    spelled = arrow.join(str(n) for n in trend.failures[-_SPELLED:])
    if len(trend.failures) > _SPELLED:
        spelled = more + spelled
    last = trend.failures[-1] if trend.failures else 0
    style = LOUD if trend.is_rising else "yellow" if last else "green"
    failures = Text().append(spelled, style=style).append("  ")
    failures.append(sparkline(trend.failures, unicode=unicode), style=style)
    limit = engine.get("maxConsecutiveFailures")
    if limit is not None:
        failures.append(f"  (dormant at {cell(limit)})")
    return [
        _field("Engine", Text(f"{enabled}, ").append(state)),
        _field("Failures", failures),
        _field("Backoff", human_ms(_number(engine.get("backoffDelay")))),
        _field(
            "Healing",
            f"attempts {cell(engine.get('totalAttempts'))}: "
            f"{cell(engine.get('successfulHealings'))} succeeded, "
            f"{cell(engine.get('failedHealings'))} failed",
        ),
    ]


_Row = list[str | Text]


def _breaker_row(breaker: Mapping[str, Any]) -> _Row:
    return [
        cell(breaker.get("name")),
        _state(breaker.get("state")),
        cell(breaker.get("failureCount")),
        cell(breaker.get("tripCount")),
    ]


def _target_row(target: Mapping[str, Any]) -> _Row:
    return [
        cell(target.get("name")),
        _state(target_health(target)),
        human_ms(_number(target.get("latencyMs"))),
        cell(target.get("consecutiveFailures")),
        cell(target.get("detail")),
    ]


def _process_row(process: Mapping[str, Any]) -> _Row:
    return [
        cell(process.get("name")),
        _state(process.get("state")),
        cell(process.get("pid")),
        cell(process.get("restarts")),
    ]


_TABLES: tuple[
    tuple[str, str, tuple[str, ...], Callable[[Mapping[str, Any]], _Row]],
    ...,
] = (
    (
        "circuitBreakers",
        "Circuit breakers",
        ("Name", "State", "Failures", "Trips"),
        _breaker_row,
    ),
    (
        "targets",
        "Targets",
        ("Name", "Health", "Latency", "Failures", "Detail"),
        _target_row,
    ),
    (
        "processes",
        "Processes",
        ("Name", "State", "PID", "Restarts"),
        _process_row,
    ),
)


def _tables(document: Mapping[str, Any]) -> list[RenderableType]:
    """Breakers, targets and processes, each when the daemon has some."""
    return [
        make_table(title, columns, [row(r) for r in found])
        for key, title, columns, row in _TABLES
        if (found := records(document, key))
    ]


def _counts(document: Mapping[str, Any]) -> list[Text]:
    tasks = section(document, "backgroundTasks")
    keys = section(section(document, "llm"), "keyManagement")
    return [
        _field("Tasks", task_summary(tasks)),
        _field(
            "Keys",
            f"{cell(keys.get('totalKeys'))} total, "
            f"{cell(keys.get('activeKeys'))} active, "
            f"{cell(keys.get('failedKeys'))} failed",
        ),
    ]


def render_view(
    trend: Trend,
    *,
    url: str,
    elapsed: float,
    minutes: float,
    count: int,
    note: str,
    unicode: bool = True,
) -> RenderableType:
    """The live view: header, warnings, status, engine, tables, counts."""
    title = Text("selfheal watch ", style="bold").append(url, style="cyan")
    progress = Text(
        f"elapsed {_duration(elapsed)} of {_duration(minutes * 60)}  "
        f"sample {trend.samples} of {count}  "
    ).append(note, style="bold")
    parts: list[RenderableType] = [title, progress]
    banner = _banner(trend)
    if banner is not None:
        parts.append(banner)
    if trend.last is None:
        parts.append(Text("no answer from the daemon yet", style="yellow"))
        return Group(*parts)
    document = trend.document
    parts.extend(_overall(document))
    parts.extend(_engine(trend, unicode=unicode))
    parts.extend(_tables(document))
    parts.extend(_counts(document))
    return Group(*parts)


# ----------------------------------------------------------------- running


def _fetch(client: DaemonClient, trend: Trend) -> None:
    """Ask the daemon once and record the answer (or why there was none)."""
    at = system_clock.time()
    try:
        document = client.get("/api/status")
    except UnreachableError as exc:
        trend.miss(exc.reason, at)
    except DaemonError as exc:
        trend.miss(str(exc), at)
    else:
        trend.add(document if isinstance(document, dict) else {}, at)


def _wait(seconds: float, tick: Callable[[float], None] | None) -> None:
    """Sleep *seconds*; with *tick*, in steps that end on whole seconds
    left, telling it before each step how long is left."""
    if tick is None:
        _client.sleep(seconds)
        return
    deadline = system_clock.monotonic() + seconds
    left = seconds
    while left > 0:
        tick(left)
        step = left % _TICK or _TICK
        _client.sleep(step)
        left = min(left - step, deadline - system_clock.monotonic())


def _run(
    count: int,
    interval: float,
    take: Callable[[], None],
    tick: Callable[[float], None] | None = None,
) -> bool:
    """Take *count* samples *interval* apart; False if Ctrl+C ended it."""
    began = system_clock.monotonic()
    try:
        for index in range(count):
            if index:
                spent = system_clock.monotonic() - began
                _wait(max(0.0, interval - spent), tick)
                began = system_clock.monotonic()
            take()
    except KeyboardInterrupt:
        return False
    return True


def _lines(
    console: Console,
    client: DaemonClient,
    trend: Trend,
    *,
    minutes: float,
    interval: float,
    count: int,
) -> bool:
    """Watch with one line per sample; False if Ctrl+C ended it."""
    console.print(
        f"watching {client.url} every {interval:g}s for {minutes:g} min "
        f"({count} samples); Ctrl+C stops",
        markup=False,
    )

    def take() -> None:
        _fetch(client, trend)
        print_line(console, trend)

    return _run(count, interval, take)


def _live(
    console: Console,
    client: DaemonClient,
    trend: Trend,
    *,
    minutes: float,
    interval: float,
    count: int,
) -> bool:
    """Watch in one view redrawn in place; False if Ctrl+C ended it."""
    started = system_clock.monotonic()
    unicode = console.encoding.lower().startswith("utf")

    def view(note: str) -> RenderableType:
        return render_view(
            trend,
            url=client.url,
            elapsed=system_clock.monotonic() - started,
            minutes=minutes,
            count=count,
            note=note,
            unicode=unicode,
        )

    with Live(
        view("sampling now"), console=console, auto_refresh=False
    ) as live:

        def take() -> None:
            live.update(view("sampling now"), refresh=True)
            _fetch(client, trend)

        def tick(left: float) -> None:
            wait = human_ms(math.ceil(left) * 1000)
            live.update(view(f"next sample in {wait}"), refresh=True)

        finished = _run(count, interval, take, tick)
        note = "done" if finished else "stopped early (Ctrl+C)"
        live.update(view(note), refresh=True)
    return finished


def watch(
    minutes: Annotated[
        float,
        typer.Option(help="How long to watch, in minutes.", min=0),
    ] = 30,
    interval: Annotated[
        float,
        typer.Option(
            help="Seconds between samples (fractions allowed).", min=0.001
        ),
    ] = 60,
    url: UrlOption = None,
) -> None:
    """Watch the status after a recovery (the guide's step 5).

    On a terminal: one view, redrawn in place, of the status, the engine
    (consecutiveFailures 0 -> 1 -> 2 so far), breakers, targets and a
    countdown to the next sample, with a red banner while failures rise or
    the status is critical. Elsewhere (a pipe, | tee): one line per sample,
    "HH:MM:SS status=... consecutiveFailures=N", and WARNING lines. Either
    way it ends with what changed: status, failures, dormant mode,
    breakers, targets, healing counts. Ctrl+C ends early, with that summary.
    Exit code: the worst status seen (0/1/2), 3 if never reachable.

    Example: selfheal watch --minutes 30 --interval 60
    """
    count = int(minutes * 60 // interval) + 1
    console = stdout()
    trend = Trend()
    show = _live if console.is_interactive else _lines
    with session(url) as client:
        finished = show(
            console,
            client,
            trend,
            minutes=minutes,
            interval=interval,
            count=count,
        )
    print_summary(console, trend, early=not finished)
    raise typer.Exit(trend.exit_code())
