"""``selfheal config check``: validate a config file without running it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from selfhealing.config import load_config
from selfhealing.exceptions import ConfigError
from selfhealing.runtime import Runtime


__all__ = ["config_app"]

config_app = typer.Typer(help="Work with selfheal.toml.", no_args_is_help=True)


@config_app.command("check")
def check(
    file: Annotated[
        Path,
        typer.Argument(help="The config file to validate.", dir_okay=False),
    ] = Path("selfheal.toml"),
) -> None:
    """Validate a config file: every error with its field path.

    Also builds the daemon (without starting anything), so what would only
    stop `selfheal run` shows here too: preventive rules, the flags in
    .env / .env.local, API key settings. Exit code 0 when valid, 1 when
    not.

    Example: selfheal config check selfheal.toml
    """
    try:
        config = load_config(file)
        # What only the assembled daemon can tell (a preventive rule's
        # series, flag files, key settings): build it, start nothing.
        Runtime(config, persistent=False)
    except ConfigError as exc:
        typer.echo(f"{exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{file}: OK ({len(config.processes)} processes, "
        f"{len(config.targets)} targets, {len(config.actions)} actions, "
        f"{len(config.breakers)} breakers)"
    )
