"""``selfheal config check``: validate a config file without running it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from selfhealing.config import load_config
from selfhealing.exceptions import ConfigError


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

    Exit code 0 when valid, 1 when not.

    Example: selfheal config check selfheal.toml
    """
    try:
        config = load_config(file)
    except ConfigError as exc:
        typer.echo(f"{exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{file}: OK ({len(config.processes)} processes, "
        f"{len(config.targets)} targets, {len(config.actions)} actions, "
        f"{len(config.breakers)} breakers)"
    )
