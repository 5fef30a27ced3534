"""``selfheal events``: the audit trail, one line per event, or followed.

Each line shows when, what kind, which target, the message, and who acted
and why when an operator did. ``--follow`` polls ``GET /api/events`` every
second from the last id seen, until Ctrl+C.
"""

from __future__ import annotations

import json

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from rich.console import Console
from rich.text import Text

from selfhealing.cli import _client
from selfhealing.cli._client import UrlOption, session, stdout
from selfhealing.cli._status import local_time


__all__ = ["events"]

_KIND_STYLES = {
    "healing.failed": "red",
    "healing.succeeded": "green",
    "engine.dormant_entered": "bold red",
    "engine.dormant_exited": "green",
    "flag.error": "yellow",
}


def _line(event: Mapping[str, Any]) -> Text:
    epoch = event.get("atEpoch")
    when = (
        local_time(epoch)
        if isinstance(epoch, int | float)
        else str(event.get("at") or "-")
    )
    kind = str(event.get("kind") or "-")
    line = Text(f"{when}  ")
    line.append(f"{kind:<22}", style=_KIND_STYLES.get(kind, ""))
    line.append(f"  {event.get('target') or '-'}  {event.get('message', '')}")
    who = [
        f"{label} {event[key]}"
        for label, key in (("by", "actor"), ("reason:", "reason"))
        if event.get(key)
    ]
    if who:
        line.append(f"  ({'; '.join(who)})", style="cyan")
    return line


def _show(console: Console, page: Mapping[str, Any], *, as_json: bool) -> None:
    for event in page.get("events") or []:
        if as_json:
            typer.echo(json.dumps(event, ensure_ascii=False))
        elif isinstance(event, dict):
            console.print(_line(event))


def _since(value: str | None) -> dict[str, str | None]:
    """An event id goes to ``since``, a time to ``sinceTime``."""
    if value is None or value.strip().isdigit():
        return {"since": value and value.strip()}
    return {"sinceTime": value}


def events(
    *,
    limit: Annotated[
        int, typer.Option(help="How many events (the latest).", min=1)
    ] = 50,
    kind: Annotated[
        str | None,
        typer.Option(help='Only this kind, or a prefix: "healing.*".'),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Only events about this target.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="After this event id, or from this ISO 8601 time.",
            metavar="ID|ISO",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing new events until Ctrl+C."
        ),
    ] = False,
    json_lines: Annotated[
        bool, typer.Option("--json", help="One JSON object per line.")
    ] = False,
    url: UrlOption = None,
    interval: Annotated[
        float, typer.Option(hidden=True, help="Seconds between polls.")
    ] = 1.0,
    max_polls: Annotated[
        int, typer.Option(hidden=True, help="Stop after N polls (0: never).")
    ] = 0,
) -> None:
    """Show the audit trail: attempts, skips, transitions, resumes, resets.

    Example: selfheal events --kind "healing.*" --limit 20 --follow
    """
    filters = {"kind": kind, "target": target, **_since(since)}
    params: dict[str, str | int] = {
        key: value for key, value in filters.items() if value is not None
    }
    params["limit"] = limit
    console = stdout()
    polls = 0
    try:
        with session(url) as client:
            while True:
                page = client.get("/api/events", params)
                _show(console, page, as_json=json_lines)
                polls += 1
                if not follow or polls == max_polls:
                    break
                if page.get("lastId") is not None:
                    params.pop("sinceTime", None)
                    params["since"] = str(page["lastId"])
                _client.sleep(interval)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
