"""The typer application and its entry point."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer


__all__ = ["app", "main"]

app = typer.Typer(
    name="selfheal",
    help=(
        "Governed self-healing: supervise processes, watch targets, heal "
        "them, and never run away while doing it."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"selfheal {version('selfhealing')}")
        raise typer.Exit


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Governed self-healing for services."""


@app.command("version")
def version_command() -> None:
    """Print the version.

    Example: selfheal version
    """
    typer.echo(f"selfheal {version('selfhealing')}")


def main() -> None:
    """Console-script entry point."""
    app()
