"""Preventive healing end to end: a real process that leaks memory on purpose
is restarted before it reaches the threshold, and its check never fails."""

from __future__ import annotations

import json
import sys
import time

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import DaemonProcess, free_port


pytestmark = pytest.mark.slow

PY = json.dumps(sys.executable)
THRESHOLD_MB = 400


def config(port: int, *, flag_lines: str = "") -> str:
    return f"""
[engine]
backoff_base = "100ms"

[resources]
interval = "200ms"

[[processes]]
name = "leaky"
command = [{PY}, "-m", "selfhealing.demo.service", "serve", "--port", "{port}", "--dir", "."]
stop_timeout = "2s"

[[targets]]
name = "leaky"
actions = ["restart-leaky"]
[targets.check]
type = "http"
url = "http://127.0.0.1:{port}/health"
interval = "200ms"
timeout = "500ms"
failure_threshold = 2

[[actions]]
name = "restart-leaky"
type = "restart_process"
process = "leaky"

[[preventive]]
name = "leak"
process = "leaky"
condition = "rss will reach {THRESHOLD_MB}MB within 30s"
window = "3s"
action = "restart-leaky"
cooldown = "10m"
verify_timeout = "10s"
{flag_lines}"""


def leak(directory: Path, mb_per_s: float) -> None:
    (directory / "scenes.json").write_text(
        json.dumps(
            {
                "epoch": time.time(),
                "cycle": 3600,
                "scenes": [],
                "leak_mb_per_s": mb_per_s,
            }
        )
    )


def get(daemon: DaemonProcess, path: str, **params: Any) -> Any:
    return httpx.get(daemon.url + path, params=params, timeout=5).json()


def wait_for(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class TestPreventiveHealing:
    def test_leak_is_restarted_before_the_threshold(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """A steady leak is caught by the forecast and restarted early."""
        leak(tmp_path, 25)
        daemon = spawn_daemon(config(free_port()))
        assert wait_for(
            lambda: (
                get(daemon, "/api/status")["selfHealing"]["successfulHealings"]
                >= 1
            )
        ), "no preventive healing"

        attempted = get(daemon, "/api/events", kind="healing.attempted")[
            "events"
        ]
        assert attempted[0]["data"]["preventive"] is True
        assert "leak" == attempted[0]["data"]["rule"]
        triggered = get(daemon, "/api/events", kind="preventive.triggered")[
            "events"
        ]
        evaluation = triggered[0]["data"]["evaluation"]
        # Acted on the forecast, well before the process got there.
        assert evaluation["current"] < THRESHOLD_MB * 1e6 * 0.8
        succeeded = get(daemon, "/api/events", kind="healing.succeeded")[
            "events"
        ]
        assert succeeded[0]["data"]["preventive"] is True
        # The health check never failed: this was prevention, not repair.
        assert (
            [] == get(daemon, "/api/events", kind="target.unhealthy")["events"]
        )
        process = get(daemon, "/api/status")["processes"][0]
        assert process["restarts"] >= 1
        rss = get(daemon, "/api/status")["resources"]["processes"][0]
        assert rss["rssBytes"] < THRESHOLD_MB * 1e6

    def test_flag_off_forecasts_but_does_not_act(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """FEATURE_PREVENTIVE_HEALING_ENABLED=false: a WARNING, no action."""
        (tmp_path / ".env.local").write_text(
            "FEATURE_PREVENTIVE_HEALING_ENABLED=false\n"
        )
        leak(tmp_path, 25)
        daemon = spawn_daemon(config(free_port()))

        def warned() -> bool:
            issues = get(daemon, "/api/status")["issues"]
            return any("preventive rule 'leak'" in i for i in issues)

        assert wait_for(warned), "no forecast warning"
        document = get(daemon, "/api/status")
        assert 0 == document["selfHealing"]["totalAttempts"]
        assert "warning" == document["status"]
        assert "disabled" == document["resources"]["preventive"][0]["decision"]

    def test_process_monitoring_off_samples_nothing(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """FEATURE_PROCESS_MONITORING_ENABLED=false: no samples, no action."""
        (tmp_path / ".env.local").write_text(
            "FEATURE_PROCESS_MONITORING_ENABLED=false\n"
        )
        leak(tmp_path, 25)
        daemon = spawn_daemon(config(free_port()))

        def sampler_ran() -> bool:
            tasks = get(daemon, "/api/tasks")["tasks"]
            runs = {t["id"]: t["runs"] for t in tasks}
            return runs.get("resources.sample", 0) >= 10

        assert wait_for(sampler_ran), "the sampler task did not run"
        document = get(daemon, "/api/status")
        assert (False, 0) == (
            document["resources"]["enabled"],
            document["resources"]["passes"],
        )
        assert 0 == document["selfHealing"]["totalAttempts"]
