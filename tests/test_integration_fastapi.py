"""Embedding: the same routes inside your own FastAPI app."""

from __future__ import annotations

import importlib
import sys

from collections.abc import Iterator
from pathlib import Path

import pytest

from fastapi import FastAPI
from fastapi.testclient import TestClient

from selfhealing import defaults
from selfhealing.integrations.fastapi import install
from selfhealing.runtime import Runtime


@pytest.fixture(autouse=True)
def _fresh_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    defaults._reset_for_tests()
    yield
    defaults._reset_for_tests()


def make_app(tmp_path: Path) -> tuple[FastAPI, Runtime]:
    app = FastAPI()

    @app.get("/orders")
    def orders() -> dict[str, int]:
        return {"orders": 3}

    runtime = install(
        app,
        Runtime(directory=tmp_path, environ={}, persistent=False),
        prefix="/ops",
    )
    return app, runtime


class TestInstall:
    def test_routes_live_beside_the_apps_own(self, tmp_path: Path) -> None:
        """Your routes keep working; the status API answers under the prefix."""
        app, _ = make_app(tmp_path)
        with TestClient(app) as client:
            assert {"orders": 3} == client.get("/orders").json()
            status = client.get("/ops/api/status").json()
            assert "healthy" == status["status"]
            assert 200 == client.get("/ops/metrics").status_code

    def test_lifespan_starts_and_stops_the_runtime(
        self, tmp_path: Path
    ) -> None:
        """The runtime starts with the app and stops with it."""
        app, runtime = make_app(tmp_path)
        assert runtime.started_at is None
        with TestClient(app):
            assert runtime.started_at is not None
            assert not runtime.stopping.is_set()
        assert runtime.stopping.is_set()

    def test_resume_through_the_embedded_route(self, tmp_path: Path) -> None:
        """The guide's resume call works against the embedding app."""
        app, runtime = make_app(tmp_path)
        with TestClient(app) as client:
            runtime.engine.enter_dormant("drill")
            answer = client.post(
                "/ops/api/system/heal/resume", json={"reason": "fixed"}
            ).json()
            assert answer["resumed"] is True

    def test_the_dashboard_needs_the_root(self, tmp_path: Path) -> None:
        """The dashboard is offered at / only, not under a prefix."""
        with pytest.raises(ValueError, match="drop prefix"):
            install(
                FastAPI(),
                Runtime(directory=tmp_path, environ={}, persistent=False),
                prefix="/ops",
                dashboard=True,
            )


class TestTheExample:
    def test_example_serves_the_defaults(self) -> None:
        """examples/fastapi_embedding.py: its breaker and interval task
        show in the status, because the runtime serves the defaults."""
        examples = Path(__file__).parent.parent / "examples"
        sys.path.insert(0, str(examples))
        try:
            module = importlib.import_module("fastapi_embedding")
            module = importlib.reload(module)
            with TestClient(module.app) as client:
                client.post("/orders/12")
                status = client.get("/api/status").json()
        finally:
            sys.path.remove(str(examples))
        assert "payments-api" in [b["name"] for b in status["circuitBreakers"]]
        assert "refresh-exchange-rates" in [
            t["id"] for t in status["backgroundTasks"]["tasks"]
        ]
