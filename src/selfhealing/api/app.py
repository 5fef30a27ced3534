"""create_app(): the daemon's FastAPI application around one Runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI

from selfhealing.api import metrics_route
from selfhealing.api.bodylimit import BodyLimitMiddleware
from selfhealing.api.errors import install_error_handlers
from selfhealing.api.responses import JSON
from selfhealing.api.routes import build_router
from selfhealing.api.stream import router as stream_router
from selfhealing.dashboard import router as dashboard_router
from selfhealing.runtime import Runtime


__all__ = ["create_app"]

DESCRIPTION = """\
Governed self-healing. Reads are open; every mutating route needs
`Authorization: Bearer $SELFHEAL_ADMIN_TOKEN` when that token is set.
Errors are `{"error": {"code": ..., "message": ...}}`.
"""


def create_app(runtime: Runtime, *, manage_runtime: bool = True) -> FastAPI:
    """The API bound to *runtime*; starts and stops it with the app when
    *manage_runtime* (the daemon), or leaves that to the caller."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="selfhealing",
        version=version("selfhealing"),
        description=DESCRIPTION,
        default_response_class=JSON,
        lifespan=lifespan if manage_runtime else None,
    )
    app.add_middleware(BodyLimitMiddleware)
    install_error_handlers(app)
    app.include_router(build_router())
    app.include_router(stream_router)
    app.include_router(dashboard_router)
    app.include_router(metrics_route.router)
    app.state.selfheal_runtime = runtime
    return app
