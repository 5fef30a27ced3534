"""``selfheal demo``: see detection, healing, backoff and recovery at once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from selfhealing.daemon import serve
from selfhealing.demo import banner, prepare_demo


__all__ = ["demo"]


def demo(
    port: Annotated[
        int, typer.Option(help="Port of the status API.", min=1, max=65535)
    ] = 3001,
    chaos: Annotated[
        bool,
        typer.Option(
            "--chaos",
            help="Break the service for good: practise dormant mode and "
            "the resume procedure.",
        ),
    ] = False,
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", help="Where the demo keeps its config, logs and state."
        ),
    ] = Path("selfheal-demo"),
) -> None:
    """Run the daemon with a sample service that misbehaves on a schedule.

    Example: selfheal demo        (then, in another shell: selfheal status)
    """
    directory = directory.resolve()
    config = prepare_demo(directory, port=port, chaos=chaos)
    typer.echo(banner(directory, port=port, chaos=chaos), err=True)
    raise typer.Exit(serve(config, directory=directory))
