"""Fuzz the API with schemathesis against its own OpenAPI schema: no 500s."""

from __future__ import annotations

from pathlib import Path

import schemathesis

from hypothesis import HealthCheck, settings

from selfhealing.api import create_app
from selfhealing.runtime import Runtime


def _app() -> object:
    runtime = Runtime(
        directory=Path("/nonexistent-selfheal"), environ={}, persistent=False
    )
    return create_app(runtime, manage_runtime=False)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_produces_a_server_error(case: schemathesis.Case) -> None:
    """Every generated request gets a documented, schema-valid, non-5xx answer."""
    case.call_and_validate()
