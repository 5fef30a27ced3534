"""``selfheal resume``, ``breakers``, ``tasks`` and ``flags``: the guide's
recovery procedures, each one HTTP call to the daemon.

Mutating commands send the admin token (``--token`` or
``SELFHEAL_ADMIN_TOKEN``) and the operator's reason; the daemon records
both, with who acted, in its audit trail.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any
from urllib.parse import quote

import typer

from rich.text import Text

from selfhealing.cli._client import (
    Connection,
    TokenOption,
    UrlOption,
    echo_json,
    session,
    stdout,
)
from selfhealing.cli._status import (
    BREAKER_COLUMNS,
    FLAG_COLUMNS,
    breaker_rows,
    flag_rows,
    human_ms,
    table,
    task_load,
    task_summary,
)
from selfhealing.exceptions import FlagValueError
from selfhealing.flags import parse_bool


__all__ = ["breakers_app", "flags_app", "resume", "tasks_app"]

_CONFLICT = 409
_WORDS = "true/false, 1/0, yes/no or on/off"

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the daemon's JSON answer.")
]
ReasonOption = Annotated[
    str | None,
    typer.Option(
        "--reason",
        "-r",
        help="Why; recorded in the audit trail with who acted.",
    ),
]
RequiredReason = Annotated[
    str,
    typer.Option(
        "--reason",
        "-r",
        help="Why (required); recorded in the audit trail with who acted.",
    ),
]
TaskId = Annotated[str, typer.Argument(metavar="ID", help="The task id.")]


def _path(*parts: str) -> str:
    return "".join(f"/{quote(part, safe='')}" for part in parts)


def _reason_body(reason: str | None) -> dict[str, Any] | None:
    return None if reason is None else {"reason": reason}


def _group(ctx: typer.Context, url: str | None, token: str | None) -> None:
    ctx.obj = Connection(url, token)


def _say(message: str, style: str = "") -> None:
    stdout().print(Text(message, style=style))


# Resume.


def resume(
    reason: RequiredReason,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Resume self-healing from DORMANT mode (the guide's step 3).

    Fix the root cause first (step 2). Resets consecutiveFailures and the
    backoff and force-resets self-healing-main. Not dormant is not an
    error: it says so and exits 0.

    Example: selfheal resume --reason "Valid API keys added"
    """
    with session(url, token) as client:
        answer = client.post("/api/system/heal/resume", {"reason": reason})
    if not answer.get("resumed"):
        _say("not dormant, nothing to resume")
        return
    engine = answer.get("selfHealing") or {}
    _say(f"resumed: {answer.get('message', 'the engine is active')}", "green")
    _say(
        f"consecutiveFailures {engine.get('consecutiveFailures')}, backoff "
        f"{human_ms(engine.get('backoffDelay'))}, self-healing-main and the "
        "target breakers reset to CLOSED"
    )
    _say("next: watch it for 30 minutes (step 5): selfheal watch")


# Breakers.

breakers_app = typer.Typer(no_args_is_help=False)


@breakers_app.callback(invoke_without_command=True)
def _breakers(
    ctx: typer.Context, url: UrlOption = None, token: TokenOption = None
) -> None:
    """List circuit breakers (the default) or reset one.

    Example: selfheal breakers
    """
    _group(ctx, url, token)
    if ctx.invoked_subcommand is None:
        list_breakers(ctx)


@breakers_app.command("list")
def list_breakers(
    ctx: typer.Context, json_output: JsonOption = False, url: UrlOption = None
) -> None:
    """List every circuit breaker: state, failures, trips.

    Example: selfheal breakers list
    """
    with session(url, ctx=ctx) as client:
        breakers = client.get("/api/circuit-breakers")
    if json_output:
        echo_json(breakers)
        return
    table(
        stdout(), "Circuit breakers", BREAKER_COLUMNS, breaker_rows(breakers)
    )


@breakers_app.command("reset")
def reset_breaker(
    ctx: typer.Context,
    *,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Breaker name.")],
    reason: RequiredReason,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Needed to leave PERMANENT_OPEN; fix the root cause first.",
        ),
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Reset a circuit breaker to CLOSED.

    A PERMANENT_OPEN breaker needs --force, once the root cause is fixed;
    otherwise it opens again. Resetting self-healing-main does not end
    dormant mode: selfheal resume does.

    Example: selfheal breakers reset self-healing-main -r "fixed" --force
    """
    hint = (
        "fix the root cause first, then add --force: selfheal breakers "
        f'reset {name} --reason "..." --force'
    )
    with session(url, token, ctx=ctx, hints={_CONFLICT: hint}) as client:
        answer = client.post(
            f"/api/circuit-breakers{_path(name)}/reset",
            {"force": force, "reason": reason},
        )
    _say(
        f"circuit breaker {answer.get('name', name)} reset: "
        f"{answer.get('previousState')} -> {answer.get('state')}",
        "green",
    )
    if answer.get("note"):
        _say(f"note: {answer['note']}", "yellow")


# Tasks.

tasks_app = typer.Typer(no_args_is_help=False)


@tasks_app.callback(invoke_without_command=True)
def _tasks(
    ctx: typer.Context, url: UrlOption = None, token: TokenOption = None
) -> None:
    """Background tasks: list them (the default), pause, resume, clean up.

    Example: selfheal tasks
    """
    _group(ctx, url, token)
    if ctx.invoked_subcommand is None:
        list_tasks(ctx)


def _print_tasks(snapshot: dict[str, Any]) -> None:
    tasks = [t for t in snapshot.get("tasks") or [] if isinstance(t, dict)]
    rows = [
        [
            str(t.get("id")),
            human_ms((t.get("interval") or 0) * 1000),
            str(t.get("state")),
            str(t.get("runs")),
            str(t.get("failures")),
            str(t.get("skipped")),
            str(t.get("lastRunAt") or "-"),
            str(t.get("lastError") or "-"),
        ]
        for t in tasks
    ]
    console = stdout()
    if rows:
        columns = ("ID", "Every", "State", "Runs", "Failures", "Skipped")
        table(
            console,
            "Background tasks",
            (*columns, "Last run", "Last error"),
            rows,
        )
    load = task_load(snapshot)
    style = "bold red" if load.startswith("OVERLOAD") else ""
    console.print(
        Text(
            task_summary(snapshot),
            style=style or ("yellow" if load.startswith("caution") else ""),
        )
    )
    duplicates = sorted(
        task_id
        for task_id, n in Counter(str(t.get("id")) for t in tasks).items()
        if n > 1
    )
    if duplicates:
        console.print(
            Text(
                f"duplicate task ids: {', '.join(duplicates)}; restart the "
                "daemon",
                style="bold red",
            )
        )


@tasks_app.command("list")
def list_tasks(
    ctx: typer.Context, json_output: JsonOption = False, url: UrlOption = None
) -> None:
    """List background tasks, with the guide's thresholds.

    3-5 tasks is normal, 6-10 calls for caution, more than 10 is an
    overload; duplicate ids are flagged.

    Example: selfheal tasks list
    """
    with session(url, ctx=ctx) as client:
        snapshot = client.get("/api/tasks")
    if json_output:
        echo_json(snapshot)
        return
    _print_tasks(snapshot)


def _act(
    ctx: typer.Context,
    path: str,
    done: str,
    *,
    reason: str | None,
    url: str | None,
    token: str | None,
    method: str = "POST",
) -> None:
    with session(url, token, ctx=ctx) as client:
        answer = client.request(method, path, body=_reason_body(reason))
    snapshot = answer.get("backgroundTasks") or {}
    _say(
        done.format(changed=answer.get("changed"))
        + f" (now {snapshot.get('totalTasks')} tasks, "
        f"{snapshot.get('activeTasks')} active)",
        "green",
    )


@tasks_app.command("pause-all")
def pause_all(
    ctx: typer.Context,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Pause every background task (checks included).

    Example: selfheal tasks pause-all --reason "maintenance"
    """
    _act(
        ctx,
        "/api/tasks/pause-all",
        "paused {changed} tasks",
        reason=reason,
        url=url,
        token=token,
    )


@tasks_app.command("resume-all")
def resume_all(
    ctx: typer.Context,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Resume every paused background task.

    Example: selfheal tasks resume-all --reason "maintenance over"
    """
    _act(
        ctx,
        "/api/tasks/resume-all",
        "resumed {changed} tasks",
        reason=reason,
        url=url,
        token=token,
    )


@tasks_app.command("cleanup")
def cleanup(
    ctx: typer.Context,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Unregister every background task (the guide's emergency cleanup).

    Restart the daemon afterwards to register them again.

    Example: selfheal tasks cleanup --reason "21 tasks, overload"
    """
    _act(
        ctx,
        "/api/tasks/cleanup",
        "cleaned up {changed} tasks; restart the daemon to register them "
        "again",
        reason=reason,
        url=url,
        token=token,
    )


@tasks_app.command("pause")
def pause(
    ctx: typer.Context,
    task_id: TaskId,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Pause one background task.

    Example: selfheal tasks pause check:web --reason "deploying web"
    """
    _act(
        ctx,
        f"/api/tasks{_path(task_id)}/pause",
        f"paused task {task_id}",
        reason=reason,
        url=url,
        token=token,
    )


@tasks_app.command("resume")
def resume_task(
    ctx: typer.Context,
    task_id: TaskId,
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Resume one paused background task.

    Example: selfheal tasks resume check:web --reason "deploy done"
    """
    _act(
        ctx,
        f"/api/tasks{_path(task_id)}/resume",
        f"resumed task {task_id}",
        reason=reason,
        url=url,
        token=token,
    )


@tasks_app.command("rm")
def remove(
    ctx: typer.Context,
    task_id: TaskId,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Unregister one background task (the guide's unregister).

    Example: selfheal tasks rm legacy-poller
    """
    _act(
        ctx,
        _path("api", "tasks", task_id),
        f"unregistered task {task_id}",
        reason=None,
        url=url,
        token=token,
        method="DELETE",
    )


# Flags.

flags_app = typer.Typer(no_args_is_help=False)


@flags_app.callback(invoke_without_command=True)
def _flags(
    ctx: typer.Context, url: UrlOption = None, token: TokenOption = None
) -> None:
    """Feature flags: list them (the default), override one, reload files.

    Example: selfheal flags
    """
    _group(ctx, url, token)
    if ctx.invoked_subcommand is None:
        list_flags(ctx)


def _print_flags(answer: dict[str, Any]) -> int:
    """Print the flags and any file errors; the number of errors."""
    console = stdout()
    table(
        console,
        "Feature flags",
        FLAG_COLUMNS,
        flag_rows(answer.get("flags") or {}),
    )
    errors = answer.get("errors") or []
    for error in errors:
        console.print(
            Text(
                f"WARNING: {error} (the previous value stays)", style="yellow"
            )
        )
    return len(errors)


@flags_app.command("list")
def list_flags(
    ctx: typer.Context, json_output: JsonOption = False, url: UrlOption = None
) -> None:
    """Show each flag's value and where it came from.

    Example: selfheal flags list
    """
    with session(url, ctx=ctx) as client:
        answer = client.get("/api/flags")
    if json_output:
        echo_json(answer)
        return
    _print_flags(answer)


def _switch(value: str) -> bool:
    try:
        return parse_bool(value, name="VALUE")
    except FlagValueError:
        raise typer.BadParameter(f"expected {_WORDS}, got {value!r}") from None


@flags_app.command("set")
def set_flag(
    ctx: typer.Context,
    *,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="e.g. FEATURE_AUTO_HEALING_ENABLED."
        ),
    ],
    value: Annotated[
        bool,
        typer.Argument(
            metavar="true|false", parser=_switch, help=f"One of {_WORDS}."
        ),
    ],
    reason: RequiredReason,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Override a flag in the running daemon, until it restarts.

    The override (source "api") is gone at restart; to keep a value, write
    it to .env.local in the daemon's directory.

    Example: selfheal flags set FEATURE_AUTO_HEALING_ENABLED off -r "inc 42"
    """
    with session(url, token, ctx=ctx) as client:
        answer = client.put(
            f"/api/flags{_path(name)}", {"enabled": value, "reason": reason}
        )
    shown = str(answer.get("enabled", value)).lower()
    _say(
        f"{answer.get('name', name)}={shown} (source {answer.get('source')}: "
        "a runtime override, gone at restart)",
        "green",
    )
    _say(
        f'to keep it across restarts: echo "{name}={shown}" >> .env.local '
        "in the daemon's directory"
    )


@flags_app.command("clear")
def clear_flag(
    ctx: typer.Context,
    *,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="e.g. FEATURE_AUTO_HEALING_ENABLED."
        ),
    ],
    reason: ReasonOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Drop a runtime override: the flag falls back to the environment,
    .env.local, .env, the config or its default.

    Example: selfheal flags clear FEATURE_AUTO_HEALING_ENABLED -r "incident over"
    """
    with session(url, token, ctx=ctx) as client:
        answer = client.delete(
            f"/api/flags{_path(name)}", _reason_body(reason)
        )
    shown = str(answer.get("enabled")).lower()
    _say(
        f"{answer.get('name', name)}={shown} (source {answer.get('source')})",
        "green",
    )


@flags_app.command("reload")
def reload_flags(
    ctx: typer.Context, url: UrlOption = None, token: TokenOption = None
) -> None:
    """Re-read .env and .env.local in the daemon, without a restart.

    An invalid value keeps the previous one and is reported; the exit code
    is then 1.

    Example: selfheal flags reload
    """
    with session(url, token, ctx=ctx) as client:
        answer = client.post("/api/flags/reload")
    if _print_flags(answer):
        raise typer.Exit(1)
