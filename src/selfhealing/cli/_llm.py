"""``selfheal llm keys``: the API key pool (masked), and resetting a key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote

import typer

from rich.text import Text

from selfhealing.cli._client import (
    TokenOption,
    UrlOption,
    echo_json,
    session,
    stdout,
)
from selfhealing.cli._status import table


__all__ = ["llm_app"]

llm_app = typer.Typer(
    help="The LLM advisor's API keys (always shown masked).",
    no_args_is_help=True,
)
keys_app = typer.Typer(no_args_is_help=False)
llm_app.add_typer(keys_app, name="keys")

KEY_COLUMNS = ("id", "source", "group", "state", "failures", "last error")


def _rows(keys: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key in keys.get("keys") or []:
        state = str(key.get("state"))
        remaining = key.get("cooldownRemainingS")
        if state == "rate_limited" and remaining is not None:
            state += f" ({remaining}s left)"
        rows.append(
            [
                str(key.get("id")),
                str(key.get("source")),
                str(key.get("group") or "-"),
                state,
                str(key.get("failures")),
                str(key.get("lastError") or "-"),
            ]
        )
    return rows


def _exit_code(keys: Mapping[str, Any]) -> int:
    """As ``selfheal status``: 2 when keys exist and none is active (the
    guide's level 3), 1 when some failed, else 0."""
    if keys.get("totalKeys") and not keys.get("activeKeys"):
        return 2
    return 1 if keys.get("failedKeys") else 0


def _print(keys: Mapping[str, Any]) -> None:
    console = stdout()
    console.print(
        Text(
            f"{keys.get('totalKeys')} keys: {keys.get('activeKeys')} active, "
            f"{keys.get('rateLimitedKeys')} rate limited, "
            f"{keys.get('failedKeys')} failed"
        )
    )
    if keys.get("keys"):
        table(console, "API keys", KEY_COLUMNS, _rows(keys))
    elif not keys.get("totalKeys"):
        console.print(
            Text(
                'no key: echo "ANTHROPIC_API_KEY=sk-ant-..." >> .env.local '
                "and restart the daemon (rule-based ladders work without)"
            )
        )


@keys_app.callback(invoke_without_command=True)
def _keys(
    ctx: typer.Context,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the daemon's JSON answer.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """List the API keys and their state (the default).

    Example: selfheal llm keys
    """
    if ctx.invoked_subcommand is None:
        list_keys(json_output=json_output, url=url)


@keys_app.command("list")
def list_keys(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the daemon's JSON answer.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """List the API keys: active, rate limited (with time left) or failed.

    Exit code 0, 1 when some key failed, 2 when none is active.

    Example: selfheal llm keys list
    """
    with session(url) as client:
        keys = client.get("/api/llm/keys")
    if json_output:
        echo_json(keys)
    else:
        _print(keys)
    raise typer.Exit(_exit_code(keys))


@keys_app.command("reset")
def reset_key(
    key_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="The masked id, as listed (sk-ant-...a1b2)."
        ),
    ],
    reason: Annotated[
        str | None,
        typer.Option("--reason", "-r", help="Why; kept in the audit trail."),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Return a failed or rate-limited key to active.

    Do it once the key is valid again (Anthropic console) or replaced.

    Example: selfheal llm keys reset sk-ant-...a1b2 -r "key rotated"
    """
    body = None if reason is None else {"reason": reason}
    with session(url, token) as client:
        answer = client.post(
            f"/api/llm/keys/{quote(key_id, safe='')}/reset", body
        )
    key = answer.get("key") or {}
    stdout().print(
        Text(f"key {key.get('id')} is {key.get('state')}", style="green")
    )
    _print(answer)
