"""Mount the selfhealing API into your FastAPI app with one call.

    from fastapi import FastAPI
    from selfhealing.integrations.fastapi import install

    app = FastAPI()
    runtime = install(app)          # /api/status, /healthz, ... on your app

The runtime starts and stops with your app's lifespan (your own lifespan, if
any, still runs inside it), and by default it serves the process-wide
defaults, so the breakers, engine and background tasks your code uses are
the ones ``/api/status`` reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from selfhealing.api import metrics_route
from selfhealing.api.errors import install_error_handlers
from selfhealing.api.routes import build_router
from selfhealing.api.stream import router as stream_router
from selfhealing.dashboard import router as dashboard_router
from selfhealing.runtime import Runtime


__all__ = ["install"]


def install(
    app: FastAPI,
    runtime: Runtime | None = None,
    *,
    prefix: str = "",
    dashboard: bool = False,
) -> Runtime:
    """Add the routes under *prefix* and tie *runtime* to *app*'s lifespan.

    The status API, the event stream and ``/metrics`` are always added;
    the dashboard (at ``/``) only with *dashboard* and no *prefix*, since
    your app usually owns its root.
    """
    runtime = runtime if runtime is not None else Runtime.from_defaults()
    app.include_router(build_router(), prefix=prefix)
    app.include_router(stream_router, prefix=prefix)
    app.include_router(metrics_route.router, prefix=prefix)
    if dashboard:
        if prefix:
            raise ValueError("the dashboard is served at / only: drop prefix")
        app.include_router(dashboard_router)
    install_error_handlers(app)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(wrapped: Any) -> AsyncIterator[Any]:
        await runtime.start()
        try:
            context: AbstractAsyncContextManager[Any] = inner(wrapped)
            async with context as state:
                yield state
        finally:
            await runtime.stop()

    app.router.lifespan_context = lifespan
    app.state.selfheal_runtime = runtime
    return runtime
