"""``GET /metrics``: the runtime's metrics for Prometheus to scrape."""

from __future__ import annotations

from fastapi import APIRouter, Response

from selfhealing.api.routes import RuntimeDep
from selfhealing.metrics import CONTENT_TYPE


__all__ = ["PrometheusText", "router"]


class PrometheusText(Response):
    """The Prometheus text exposition format, version 0.0.4."""

    media_type = CONTENT_TYPE


router = APIRouter()


@router.get("/metrics", tags=["status"], response_class=PrometheusText)
async def metrics(runtime: RuntimeDep) -> PrometheusText:
    """Prometheus metrics: healing outcomes, dormant mode, breakers,
    checks, processes, tasks, keys and the audit trail."""
    # On the event loop, like every route: the parts it reads (engine,
    # targets, tasks) are only ever changed on the loop.
    return PrometheusText(runtime.metrics.render())
