"""``selfheal status``: the guide's status check, for a human.

``status`` prints ``GET /api/status`` for a human (or raw, with
``--json``) and exits 0 / 1 / 2 for healthy / warning / critical. The
helpers that read the document (``section``, ``records``, ``cell``,
``target_health``) and draw it (``make_table``, ``human_ms``) are shared
with the other commands; ``watch`` (the guide's step 5) lives in
``_watch``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from rich.console import Console
from rich.table import Table
from rich.text import Text

from selfhealing.cli._client import UrlOption, echo_json, session, stdout
from selfhealing.status import TASK_CAUTION, TASK_OVERLOAD


__all__ = [
    "BREAKER_COLUMNS",
    "FLAG_COLUMNS",
    "LOUD",
    "STATUS_EXIT",
    "STATUS_STYLES",
    "breaker_rows",
    "cell",
    "flag_rows",
    "human_ms",
    "local_time",
    "make_table",
    "records",
    "render_status",
    "section",
    "status",
    "status_exit",
    "table",
    "target_health",
    "task_load",
]

#: Exit codes of ``status`` (and ``watch``, for the worst status seen).
STATUS_EXIT = {"healthy": 0, "warning": 1, "critical": 2}
_UNKNOWN_STATUS = 1
#: How each overall status is coloured.
STATUS_STYLES = {
    "healthy": "green",
    "warning": "yellow",
    "critical": "bold red",
}
#: The style of anything the operator must act on.
LOUD = "bold red"


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


def _own_tasks(tasks: Mapping[str, Any]) -> int:
    """The daemon's own tasks (a probe per target, the resource sampler)."""
    listed = tasks.get("tasks")
    if not isinstance(listed, list):
        return 0
    return sum(
        1
        for task in listed
        if isinstance(task, Mapping) and task.get("kind", "task") != "task"
    )


def task_load(tasks: Mapping[str, Any]) -> str:
    """The guide's reading of a ``backgroundTasks`` document: normal,
    caution or overload, counting only the tasks beyond the daemon's own
    (as the status rules do)."""
    total = tasks.get("totalTasks", 0)
    count = (total if isinstance(total, int) else 0) - _own_tasks(tasks)
    if count > TASK_OVERLOAD:
        return (
            f"OVERLOAD: more than {TASK_OVERLOAD} tasks; act now "
            "(selfheal tasks cleanup, then restart the daemon)"
        )
    if count >= TASK_CAUTION:
        return (
            f"caution: {TASK_CAUTION}-{TASK_OVERLOAD} tasks, consider "
            "cleaning up"
        )
    return f"normal (3-{TASK_CAUTION - 1} is normal)"


def task_summary(tasks: Mapping[str, Any]) -> str:
    """``12 tasks (2 the daemon's own), 12 active: normal (...)``."""
    own = _own_tasks(tasks)
    mine = f" ({own} the daemon's own)" if own else ""
    return (
        f"{cell(tasks.get('totalTasks', 0))} tasks{mine}, "
        f"{cell(tasks.get('activeTasks'))} active: {task_load(tasks)}"
    )


def local_time(epoch: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Epoch seconds as local time (``-`` when unknown)."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz=UTC).astimezone().strftime(fmt)


def status_exit(status: object) -> int:
    """The exit code for an overall status (1 for one this CLI does not know)."""
    return STATUS_EXIT.get(str(status), _UNKNOWN_STATUS)


def section(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``document[key]`` when it is an object, else ``{}``."""
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def records(document: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects in the list ``document[key]`` (``[]`` when absent)."""
    value = document.get(key)
    if not isinstance(value, list):
        return []
    return [row for row in value if isinstance(row, dict)]


def cell(value: object) -> str:
    """Any JSON value as a short table cell."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(
            f"{k}={cell(v)}"
            for k, v in value.items()
            if not isinstance(v, dict | list)
        )
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    return str(value)


def target_health(target: Mapping[str, Any]) -> str:
    """A target's health (``health``, or the older boolean ``healthy``)."""
    health = target.get("health")
    if health is None and "healthy" in target:
        health = {True: "healthy", False: "unhealthy"}.get(
            target["healthy"], "unknown"
        )
    return cell(health)


def _styled(value: str) -> Text:
    return Text(value.upper(), style=STATUS_STYLES.get(value, "yellow"))


def _field(console: Console, label: str, value: str | Text) -> None:
    line = Text(f"{label:<11}")
    line.append(value if isinstance(value, Text) else Text(value))
    console.print(line)


def _engine(console: Console, engine: Mapping[str, Any]) -> None:
    if engine.get("isDormant"):
        state = Text("DORMANT", style=LOUD)
        state.append(
            f" since {cell(engine.get('dormantSince'))}: "
            f"{cell(engine.get('dormantReason'))}"
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
        f"consecutive failures {cell(failures)}"
        + (f"/{limit}" if limit is not None else "")
        + f", backoff {human_ms(engine.get('backoffDelay'))}",
    )
    _field(
        console,
        "",
        f"attempts {cell(engine.get('totalAttempts'))}: "
        f"{cell(engine.get('successfulHealings'))} succeeded, "
        f"{cell(engine.get('failedHealings'))} failed",
    )


def make_table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
) -> Table:
    """A titled table of plain cells (daemon strings are never markup)."""
    grid = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(c if isinstance(c, Text) else Text(c) for c in row))
    return grid


def table(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str | Text]],
) -> None:
    """Print :func:`make_table` on *console*."""
    console.print(make_table(title, columns, rows))


def breaker_rows(breakers: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Name, state, failures, trips, permanent-open reason."""
    return [
        [
            cell(b.get("name")),
            cell(b.get("state")),
            cell(b.get("failureCount")),
            cell(b.get("tripCount")),
            cell(b.get("permanentOpenReason")),
        ]
        for b in breakers
    ]


BREAKER_COLUMNS = ("Name", "State", "Failures", "Trips", "Permanent reason")


def flag_rows(flags: Mapping[str, Any]) -> list[list[str]]:
    """Name, value, source (``FILE:LINE`` for files, reason for ``api``)."""
    rows = []
    for name, value in flags.items():
        flag = value if isinstance(value, dict) else {}
        source = cell(flag.get("source"))
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
        targets = records(document, "targets")
        rows = [
            [
                cell(t.get("name")),
                target_health(t),
                cell(t.get("lastCheck")),
                cell(t.get("detail") or t.get("message")),
            ]
            for t in targets
        ]
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
        processes = records(document, "processes")
        rows = [
            [
                cell(p.get("name")),
                cell(p.get("state", p.get("status"))),
                cell(p.get("pid")),
                cell(p.get("restarts", p.get("restartCount"))),
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
            f"  ({cell(document.get('timestamp'))})", style=""
        ),
    )
    _engine(console, section(document, "selfHealing"))
    _field(
        console, "Tasks", task_summary(section(document, "backgroundTasks"))
    )
    keys = section(section(document, "llm"), "keyManagement")
    _field(
        console,
        "Keys",
        f"{cell(keys.get('totalKeys'))} total, "
        f"{cell(keys.get('activeKeys'))} active, "
        f"{cell(keys.get('failedKeys'))} failed",
    )
    breakers = records(document, "circuitBreakers")
    if breakers:
        table(
            console,
            "Circuit breakers",
            BREAKER_COLUMNS,
            breaker_rows(breakers),
        )
    flags = section(document, "featureFlags")
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
    raise typer.Exit(status_exit(overall))
