"""Schemathesis against the daemon's own OpenAPI schema, over real HTTP.

Two live ``selfheal run`` daemons (a supervised process, targets, the real
SQLite audit trail): one without an admin token, one with
SELFHEAL_ADMIN_TOKEN set, fuzzed both with the token and without it. Every
built-in check of schemathesis runs on every answer; the one that must
never fail is ``not_a_server_error``: zero 5xx, whatever is sent.
"""

from __future__ import annotations

import json
import sys
import time

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis

from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from selfhealing.api import create_app
from selfhealing.runtime import Runtime
from support import free_port, start_daemon_process, stop_daemon_process


pytestmark = pytest.mark.slow

TOKEN = "reliability-admin-token-0123456789"  # noqa: S105 (a test token)
EXAMPLES = 60  # per operation and mode
CONFIG = """
[engine]
backoff_base = "1s"
backoff_max = "10s"

[[processes]]
name = "web"
command = [{python}, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
stop_timeout = "2s"

[[targets]]
name = "web"
actions = ["restart-web"]
[targets.check]
type = "http"
url = "http://127.0.0.1:{port}/"
interval = "1s"
timeout = "500ms"

[[targets]]
name = "marker"
actions = ["touch-marker"]
[targets.check]
type = "command"
command = ["test", "-f", "marker"]
interval = "1s"

[[actions]]
name = "restart-web"
type = "restart_process"
process = "web"

[[actions]]
name = "touch-marker"
type = "command"
command = ["touch", "marker"]
"""


def _daemon(directory: Path, env: dict[str, str]) -> Iterator[str]:
    directory.mkdir()
    (directory / "selfheal.toml").write_text(
        CONFIG.format(python=json.dumps(sys.executable), port=free_port())
    )
    daemon = start_daemon_process(directory, env=env)
    try:
        yield daemon.url
    finally:
        stop_daemon_process(daemon)


@pytest.fixture(name="open_daemon", scope="module")
def _open_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _daemon(tmp_path_factory.mktemp("open") / "d", {})


@pytest.fixture(name="guarded_daemon", scope="module")
def _guarded_daemon(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    yield from _daemon(
        tmp_path_factory.mktemp("guarded") / "d",
        {"SELFHEAL_ADMIN_TOKEN": TOKEN},
    )


def _schema() -> schemathesis.BaseSchema:
    """The schema the daemons serve: the same app, built without one.

    (``schemathesis.pytest.from_fixture`` would fetch it from the live
    daemon, but fails on pytest 9: it reads ``request.node._nodeid``.)
    """
    runtime = Runtime(
        directory=Path("/nonexistent-selfheal"), environ={}, persistent=False
    )
    app = create_app(runtime, manage_runtime=False)
    return schemathesis.openapi.from_dict(app.openapi())


load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
schema = _schema()
# The daemons the fuzzing tests of this run reached.
FUZZED: set[str] = set()


@schema.parametrize()
@FUZZ
def test_open_daemon(case: schemathesis.Case, open_daemon: str) -> None:
    """No admin token configured: every generated request gets a
    documented, schema-valid, non-5xx answer, under every check."""
    FUZZED.add(open_daemon)
    case.call_and_validate(base_url=open_daemon, checks=ALL_CHECKS, timeout=30)


@schema.parametrize()
@FUZZ
def test_guarded_daemon_with_the_token(
    case: schemathesis.Case, guarded_daemon: str
) -> None:
    """Admin token set and sent: the mutating routes run, and still no
    generated request gets a 5xx or an undocumented answer."""
    FUZZED.add(guarded_daemon)
    case.call_and_validate(
        base_url=guarded_daemon,
        checks=ALL_CHECKS,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )


@schema.parametrize()
@FUZZ
def test_guarded_daemon_without_the_token(
    case: schemathesis.Case, guarded_daemon: str
) -> None:
    """Admin token set, not sent or a wrong one: refused with a
    documented 401 on mutating routes, never a 5xx."""
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = case.call_and_validate(
            base_url=guarded_daemon,
            checks=ALL_CHECKS,
            headers=headers,
            timeout=30,
        )
        if case.method != "GET" and response.status_code < 300:
            raise AssertionError(
                f"{case.method} {case.path} ran without the admin token"
            )


def test_daemons_survived_the_fuzzing(
    open_daemon: str, guarded_daemon: str
) -> None:
    """After the fuzzing both daemons still answer and their audit trails
    are writing (whatever the fuzzer paused, reset or unregistered)."""
    if {open_daemon, guarded_daemon} - FUZZED:
        pytest.skip("runs after this module's fuzzing tests, with them")
    for url in (open_daemon, guarded_daemon):
        deadline = time.monotonic() + 10
        while True:
            document = httpx.get(url + "/api/status", timeout=5).json()
            if document["auditTrail"]["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert document["auditTrail"]["ok"] is True
        assert 0 == document["auditTrail"]["dropped"]
        assert 200 == httpx.get(url + "/healthz", timeout=5).status_code
        # The fuzzer reached past validation into the mutating routes.
        done = httpx.get(
            url + "/api/events",
            params={"kind": "operator.*", "limit": 1000},
            timeout=5,
        ).json()["events"]
        assert len(done) >= 10
