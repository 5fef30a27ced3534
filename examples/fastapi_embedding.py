"""Embed selfhealing in your own FastAPI service.

    pip install selfhealing uvicorn
    uvicorn examples.fastapi_embedding:app --port 3001
    curl http://localhost:3001/api/status | jq '.backgroundTasks'

Your routes keep working; the operations guide's curl lines work against
your service; the breaker guarding your payment client and your interval
task show up in the status.
"""

from __future__ import annotations

import random

from fastapi import FastAPI

from selfhealing import (
    CircuitOpenError,
    background_task_manager,
    circuit_breaker_registry,
)
from selfhealing.integrations.fastapi import install


FLAKINESS = 0.2
app = FastAPI(title="orders")
runtime = install(app)

payments = circuit_breaker_registry.get_or_create(
    "payments-api", failure_threshold=3, recovery_timeout=30
)


@payments
def charge(amount: int) -> dict[str, int]:
    if random.random() < FLAKINESS:  # noqa: S311 (a pretend flaky API)
        raise ConnectionError("payments API unreachable")
    return {"charged": amount}


@app.post("/orders/{amount}")
def create_order(amount: int) -> dict[str, object]:
    try:
        return {"order": "ok", **charge(amount)}
    except CircuitOpenError as exc:
        return {"order": "queued", "retryAfter": exc.retry_after}
    except ConnectionError:
        return {"order": "queued"}


def refresh_exchange_rates() -> None:
    """A periodic job: registered by id, so a reload never doubles it."""


background_task_manager.register_interval(
    "refresh-exchange-rates", refresh_exchange_rates, 60
)
