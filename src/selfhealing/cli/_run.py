"""``selfheal run``: the daemon in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from selfhealing.daemon import serve


__all__ = ["run"]


def run(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: ./selfheal.toml when present).",
            dir_okay=False,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to listen on (default 3001).", min=1, max=65535
        ),
    ] = None,
) -> None:
    """Run the daemon: supervise, watch, heal, and serve the status API.

    Reads .env / .env.local and selfheal.toml from the working directory;
    logs go to logs/, the audit trail to .selfhealing/. Ctrl+C stops it.

    Example: selfheal run --config selfheal.toml --port 3001
    """
    raise typer.Exit(serve(config, host=host, port=port))
