"""``selfheal status`` and ``selfheal watch``: the guide's status checks.

``status`` prints ``GET /api/status`` for a human (or raw, with
``--json``) and exits 0 / 1 / 2 for healthy / warning / critical.
``watch`` is the guide's step 5: sample the status every minute for half an
hour after a recovery and shout when ``consecutiveFailures`` rises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from rich.console import Console
from rich.table import Table
from rich.text import Text

from selfhealing.cli import _client
from selfhealing.cli._client import (
    EXIT_UNREACHABLE,
    DaemonClient,
    DaemonError,
    UnreachableError,
    UrlOption,
    echo_json,
    session,
    stdout,
)
from selfhealing.clock import system_clock
from selfhealing.status import TASK_CAUTION, TASK_OVERLOAD


__all__ = [
    "BREAKER_COLUMNS",
    "FLAG_COLUMNS",
    "STATUS_EXIT",
    "breaker_rows",
    "flag_rows",
    "human_ms",
    "local_time",
    "render_status",
    "status",
    "table",
    "task_load",
    "watch",
]

#: Exit codes of ``status`` (and ``watch``, for the worst status seen).
STATUS_EXIT = {"healthy": 0, "warning": 1, "critical": 2}
_UNKNOWN_STATUS = 1
_STYLES = {"healthy": "green", "warning": "yellow", "critical": "bold red"}
_LOUD = "bold red"


def human_ms(ms: float | None) -> str:
    """A duration in milliseconds for humans: ``"250ms"``, ``"5m 20s"``."""
    if ms is None:
        return "-"
    if ms < 1000:  # noqa: PLR2004 (one second)
        return f"{ms:g}ms"
    if ms < 60_000:  # noqa: PLR2004 (one minute)
        return f"{round(ms / 1000, 1):g}s"
    hours, rest = divmod(round(ms / 1000), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = zip((hours, minutes, seconds), "hms", strict=True)
    return " ".join(f"{n}{unit}" for n, unit in parts if n)


def task_load(total: int) -> str:
    """The guide's reading of a task count: normal, caution, overload."""
    if total > TASK_OVERLOAD:
        return (
            f"OVERLOAD: more than {TASK_OVERLOAD} tasks; act now "
            "(selfheal tasks cleanup, then restart the daemon)"
        )
    if total >= TASK_CAUTION:
        return (
            f"caution: {TASK_CAUTION}-{TASK_OVERLOAD} tasks, consider "
            "cleaning up"
        )
    return f"normal (3-{TASK_CAUTION - 1} is normal)"


def local_time(epoch: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Epoch seconds as local time (``-`` when unknown)."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone().strftime(fmt)


def _section(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def _rows(document: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = document.get(key)
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, dict)]


def _cell(value: object) -> str:
    """Any JSON value as a short table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(
            f"{k}={_cell(v)}"
            for k, v in value.items()
            if not isinstance(v, dict | list)
        )
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _styled(value: str) -> Text:
    return Text(value.upper(), style=_STYLES.get(value, "yellow"))


def _field(console: Console, label: str, value: str | Text) -> None:
    line = Text(f"{label:<11}")
    line.append(value if isinstance(value, Text) else Text(value))
    console.print(line)


def _engine(console: Console, engine: Mapping[str, Any]) -> None:
    if engine.get("isDormant"):
        state = Text("DORMANT", style=_LOUD)
        state.append(
            f" since {_cell(engine.get('dormantSince'))}: "
            f"{_cell(engine.get('dormantReason'))}"
        )
    else:
        state = Text("active")
    enabled = "enabled" if engine.get("enabled", True) else "DISABLED"
    _field(console, "Engine", Text(f"{enabled}, ").append(state))
    failures = engine.get("consecutiveFailures")
    limit = engine.get("maxConsecutiveFailures")
    _field(
        console,
        "",
        f"consecutive failures {_cell(failures)}"
        + (f"/{limit}" if limit is not None else "")
        + f", backoff {human_ms(engine.get('backoffDelay'))}",
    )
    _field(
        console,
        "",
        f"attempts {_cell(engine.get('totalAttempts'))}: "
        f"{_cell(engine.get('successfulHealings'))} succeeded, "
        f"{_cell(engine.get('failedHealings'))} failed",
    )


def table(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
) -> None:
    table = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:  # Text cells: daemon strings are never markup
        table.add_row(*(c if isinstance(c, Text) else Text(c) for c in row))
    console.print(table)


def breaker_rows(breakers: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Name, state, failures, trips, permanent-open reason."""
    return [
        [
            _cell(b.get("name")),
            _cell(b.get("state")),
            _cell(b.get("failureCount")),
            _cell(b.get("tripCount")),
            _cell(b.get("permanentOpenReason")),
        ]
        for b in breakers
    ]


BREAKER_COLUMNS = ("Name", "State", "Failures", "Trips", "Permanent reason")


def flag_rows(flags: Mapping[str, Any]) -> list[list[str]]:
    """Name, value, source (``FILE:LINE`` for files, reason for ``api``)."""
    rows = []
    for name, value in flags.items():
        flag = value if isinstance(value, dict) else {}
        source = _cell(flag.get("source"))
        if flag.get("file"):
            line = flag.get("line")
            where = f"{flag['file']}:{line}" if line else str(flag["file"])
            source = f"{source} ({where})"
        if flag.get("reason"):
            source = f"{source}: {flag['reason']}"
        enabled = flag.get("enabled")
        shown = str(enabled).lower() if isinstance(enabled, bool) else "-"
        rows.append([name, shown, source])
    return rows


FLAG_COLUMNS = ("Flag", "Value", "Source")


def _targets(console: Console, document: Mapping[str, Any]) -> None:
    if "targets" in document:
        targets = _rows(document, "targets")
        rows = []
        for t in targets:
            health = t.get("health")
            if health is None and "healthy" in t:
                health = {True: "healthy", False: "unhealthy"}.get(
                    t["healthy"], "unknown"
                )
            rows.append(
                [
                    _cell(t.get("name")),
                    _cell(health),
                    _cell(t.get("lastCheck")),
                    _cell(t.get("detail") or t.get("message")),
                ]
            )
        if rows:
            table(
                console,
                "Targets",
                ("Name", "Health", "Last check", "Detail"),
                rows,
            )
        else:
            _field(console, "Targets", "none")
    if "processes" in document:
        processes = _rows(document, "processes")
        rows = [
            [
                _cell(p.get("name")),
                _cell(p.get("state", p.get("status"))),
                _cell(p.get("pid")),
                _cell(p.get("restarts", p.get("restartCount"))),
            ]
            for p in processes
        ]
        if rows:
            table(
                console,
                "Processes",
                ("Name", "State", "PID", "Restarts"),
                rows,
            )
        else:
            _field(console, "Processes", "none")


def _issues(console: Console, document: Mapping[str, Any]) -> None:
    issues = document.get("issues") or []
    if not issues:
        _field(console, "Issues", "none")
    else:
        console.print("Issues")
        for issue in issues:
            text = str(issue)
            style = "bold red" if text.startswith("CRITICAL") else "yellow"
            console.print(Text(f"  - {text}", style=style))
    recommendations = document.get("recommendations") or []
    if recommendations:
        console.print("Recommendations")
        for recommendation in recommendations:
            console.print(Text(f"  -> {recommendation}"))


def render_status(console: Console, document: Mapping[str, Any]) -> None:
    """The whole status document, for a human."""
    overall = str(document.get("status", "unknown"))
    _field(
        console,
        "Status",
        _styled(overall).append(
            f"  ({_cell(document.get('timestamp'))})", style=""
        ),
    )
    _engine(console, _section(document, "selfHealing"))
    tasks = _section(document, "backgroundTasks")
    total = tasks.get("totalTasks", 0)
    _field(
        console,
        "Tasks",
        f"{_cell(total)} total, {_cell(tasks.get('activeTasks'))} active: "
        f"{task_load(total if isinstance(total, int) else 0)}",
    )
    keys = _section(_section(document, "llm"), "keyManagement")
    _field(
        console,
        "Keys",
        f"{_cell(keys.get('totalKeys'))} total, "
        f"{_cell(keys.get('activeKeys'))} active, "
        f"{_cell(keys.get('failedKeys'))} failed",
    )
    breakers = _rows(document, "circuitBreakers")
    if breakers:
        table(
            console,
            "Circuit breakers",
            BREAKER_COLUMNS,
            breaker_rows(breakers),
        )
    flags = _section(document, "featureFlags")
    if flags:
        table(console, "Feature flags", FLAG_COLUMNS, flag_rows(flags))
    _targets(console, document)
    _issues(console, document)


def status(
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print the daemon's document as is."),
    ] = False,
    url: UrlOption = None,
) -> None:
    """Show the system status: engine, breakers, tasks, keys, flags, issues.

    Exit code 0 healthy, 1 warning, 2 critical, 3 daemon unreachable.

    Example: selfheal status   (or: selfheal status --json | jq .selfHealing)
    """
    with session(url) as client:
        document = client.get("/api/status")
    if json_output:
        echo_json(document)
    else:
        render_status(stdout(), document if isinstance(document, dict) else {})
    overall = document.get("status") if isinstance(document, dict) else None
    raise typer.Exit(STATUS_EXIT.get(str(overall), _UNKNOWN_STATUS))


@dataclass(slots=True)
class _Trend:
    """What ``watch`` has seen so far."""

    samples: int = 0
    unreachable: int = 0
    worst: str | None = None
    failures: list[int] = field(default_factory=list)
    rising: list[int] = field(default_factory=list)
    last_status: str | None = None
    dormant: bool = False

    def exit_code(self) -> int:
        if self.worst is None:
            return EXIT_UNREACHABLE if self.unreachable else 0
        return STATUS_EXIT.get(self.worst, _UNKNOWN_STATUS)

    def summary(self) -> str:
        worst = self.worst or "unknown (no answer)"
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


def _rank(value: str | None) -> int:
    return -1 if value is None else STATUS_EXIT.get(value, _UNKNOWN_STATUS)


def _sample(console: Console, client: DaemonClient, trend: _Trend) -> None:
    """Take one sample: print its line and any warning it calls for."""
    now = local_time(system_clock.time(), "%H:%M:%S")
    trend.samples += 1
    try:
        document = client.get("/api/status")
    except (UnreachableError, DaemonError) as exc:
        trend.unreachable += 1
        reason = exc.reason if isinstance(exc, UnreachableError) else exc
        console.print(Text(f"{now} unreachable ({reason})", style="yellow"))
        return
    document = document if isinstance(document, dict) else {}
    overall = str(document.get("status", "unknown"))
    engine = _section(document, "selfHealing")
    failures = engine.get("consecutiveFailures")
    failures = failures if isinstance(failures, int) else 0
    dormant = bool(engine.get("isDormant"))
    line = Text(f"{now} status=")
    line.append(overall, style=_STYLES.get(overall, "yellow"))
    line.append(f" consecutiveFailures={failures}")
    if dormant:
        line.append(" DORMANT", style=_LOUD)
    console.print(line)
    if trend.failures and failures > trend.failures[-1]:
        trend.rising.append(failures)
        chain = " -> ".join(str(n) for n in trend.rising)
        console.print(
            Text(
                f"WARNING: consecutiveFailures rising: {chain}; go back to "
                "step 2 (find the root cause)",
                style=_LOUD,
            )
        )
    else:
        trend.rising = [failures]
    if overall == "critical" and trend.last_status != "critical":
        issues = "; ".join(str(i) for i in document.get("issues") or [])
        console.print(
            Text(f"WARNING: status turned critical: {issues}", style=_LOUD)
        )
    if dormant and not trend.dormant:
        console.print(
            Text(
                "WARNING: the engine is DORMANT "
                f"({_cell(engine.get('dormantReason'))}); fix the root "
                "cause, then: selfheal resume --reason TEXT",
                style=_LOUD,
            )
        )
    trend.failures.append(failures)
    trend.dormant = dormant
    trend.last_status = overall
    if _rank(overall) > _rank(trend.worst):
        trend.worst = overall


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

    Prints "HH:MM:SS status=... consecutiveFailures=N" every interval and
    warns loudly when consecutiveFailures rises, the status turns critical
    or the engine goes dormant. Ends with a summary; Ctrl+C ends early.
    Exit code: the worst status seen (0/1/2), 3 if never reachable.

    Example: selfheal watch --minutes 30 --interval 60
    """
    count = int(minutes * 60 // interval) + 1
    console = stdout()
    trend = _Trend()
    with session(url) as client:
        console.print(
            f"watching {client.url} every {interval:g}s for {minutes:g} min "
            f"({count} samples); Ctrl+C stops",
            markup=False,
        )
        ended = "watch ended"
        began = system_clock.monotonic()
        try:
            for index in range(count):
                if index:
                    spent = system_clock.monotonic() - began
                    _client.sleep(max(0.0, interval - spent))
                    began = system_clock.monotonic()
                _sample(console, client, trend)
        except KeyboardInterrupt:
            ended = "watch stopped early"
    console.print(f"{ended}: {trend.summary()}", markup=False)
    raise typer.Exit(trend.exit_code())
