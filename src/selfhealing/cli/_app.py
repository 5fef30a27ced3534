"""The typer application and its entry point."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from selfhealing.cli._config import config_app
from selfhealing.cli._control import (
    breakers_app,
    flags_app,
    resume,
    tasks_app,
)
from selfhealing.cli._demo import demo
from selfhealing.cli._events import events
from selfhealing.cli._llm import llm_app
from selfhealing.cli._run import run
from selfhealing.cli._status import status
from selfhealing.cli._watch import watch


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


app.command("run")(run)
app.command("demo")(demo)
app.add_typer(config_app, name="config")
app.command("status")(status)
app.command("watch")(watch)
app.command("resume")(resume)
app.add_typer(breakers_app, name="breakers")
app.add_typer(tasks_app, name="tasks")
app.add_typer(flags_app, name="flags")
app.command("events")(events)
app.add_typer(llm_app, name="llm")


def main() -> None:
    """Console-script entry point."""
    app()
