"""The ``selfheal`` command line: parse, call the daemon or the library, print.

No logic lives here; every command is a thin shell over the public API.
"""

from __future__ import annotations

from selfhealing.cli._app import app, main


__all__ = ["app", "main"]
