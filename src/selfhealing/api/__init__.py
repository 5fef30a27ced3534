"""The HTTP API: status, resume, breakers, tasks and flags (FastAPI)."""

from __future__ import annotations

from selfhealing.api.app import create_app
from selfhealing.api.routes import build_router


__all__ = ["build_router", "create_app"]
