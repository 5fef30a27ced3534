"""The operations guide's own command lines, run word for word (the port
aside) with the real curl, jq, grep and sed against `selfheal run`."""

from __future__ import annotations

import json
import subprocess

from collections.abc import Callable

import httpx
import pytest

from support import DaemonProcess


pytestmark = pytest.mark.slow

STATUS_LINES = [
    "curl http://localhost:3001/api/status | jq '.'",
    "curl http://localhost:3001/api/status | jq '.selfHealing'",
    "curl http://localhost:3001/api/status | jq '.circuitBreakers'",
    "curl http://localhost:3001/api/status | jq '.backgroundTasks'",
    "curl http://localhost:3001/api/status | jq '{issues, recommendations}'",
    "curl http://localhost:3001/api/status | jq '.selfHealing.isDormant'",
    "curl http://localhost:3001/api/status | jq '.selfHealing.dormantReason'",
    "curl http://localhost:3001/api/status | jq '.llm.keyManagement'",
    "curl http://localhost:3001/api/status | jq '.circuitBreakers[] | select(.state == \"PERMANENT_OPEN\")'",
    "curl http://localhost:3001/api/status | jq '.selfHealing.consecutiveFailures'",
    "curl http://localhost:3001/api/status | jq '.circuitBreakers[] | select(.name == \"self-healing-main\").state'",
    "curl http://localhost:3001/api/status | jq '.status'",
    'curl -s http://localhost:3001/api/status | jq "{status, selfHealing: .selfHealing.consecutiveFailures}"',
    "curl http://localhost:3001/api/status | jq '.backgroundTasks.tasks'",
    "curl http://localhost:3001/api/status | jq '.backgroundTasks.tasks | group_by(.id) | map(select(length > 1))'",
    "curl http://localhost:3001/api/status | jq '.issues'",
    "curl http://localhost:3001/api/status | jq '.selfHealing.backoffDelay'",
    "curl http://localhost:3001/api/status | jq '.circuitBreakers[] | select(.name == \"self-healing-main\")'",
    "curl http://localhost:3001/api/status | jq '{status, selfHealing: .selfHealing.isDormant, issues}'",
    "curl http://localhost:3001/api/status | jq '.backgroundTasks.totalTasks'",
    "curl http://localhost:3001/api/status | jq '.llm.keyManagement.activeKeys'",
]

CONFIG = """
[[targets]]
name = "disk"
[targets.check]
type = "disk"
path = "."
max_used_percent = 100
interval = "1s"
"""


def run(daemon: DaemonProcess, line: str) -> str:
    port = daemon.url.rsplit(":", 1)[1]
    done = subprocess.run(
        ["bash", "-c", line.replace("localhost:3001", f"localhost:{port}")],
        cwd=daemon.directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == done.returncode, (line, done.stderr)
    return done.stdout.strip()


@pytest.fixture(name="daemon")
def _daemon(spawn_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return spawn_daemon(CONFIG)


class TestStatusLines:
    def test_every_status_line_answers(self, daemon: DaemonProcess) -> None:
        """Each of the guide's curl | jq lines prints what it expects."""
        outputs = {line: run(daemon, line) for line in STATUS_LINES}
        assert "false" == outputs[STATUS_LINES[5]]
        assert "null" == outputs[STATUS_LINES[6]]
        assert {"totalKeys": 0, "activeKeys": 0, "failedKeys": 0}.items() <= (
            json.loads(outputs[STATUS_LINES[7]]).items()
        )
        assert "" == outputs[STATUS_LINES[8]]  # nothing PERMANENT_OPEN
        assert "0" == outputs[STATUS_LINES[9]]
        assert '"CLOSED"' == outputs[STATUS_LINES[10]]
        assert '"healthy"' == outputs[STATUS_LINES[11]]
        assert {"status": "healthy", "selfHealing": 0} == json.loads(
            outputs[STATUS_LINES[12]]
        )
        assert [] == json.loads(outputs[STATUS_LINES[14]])  # no duplicates
        assert "5000" == outputs[STATUS_LINES[16]]
        assert {"status": "healthy", "selfHealing": False, "issues": []} == (
            json.loads(outputs[STATUS_LINES[18]])
        )
        # The disk check's probe and the resource sampler.
        assert "2" == outputs[STATUS_LINES[19]]
        assert "0" == outputs[STATUS_LINES[20]]
        whole = json.loads(outputs[STATUS_LINES[0]])
        assert {
            "status",
            "selfHealing",
            "circuitBreakers",
            "backgroundTasks",
            "llm",
            "issues",
            "recommendations",
        } <= whole.keys()


class TestFlagProcedures:
    def test_emergency_stop_and_reenable(self, daemon: DaemonProcess) -> None:
        """The guide's .env.local edits, then a reload, switch healing."""
        run(daemon, 'echo "FEATURE_AUTO_HEALING_ENABLED=false" >> .env.local')
        assert "FEATURE_AUTO_HEALING_ENABLED=false" == run(
            daemon, "cat .env.local | grep FEATURE_"
        )
        httpx.post(daemon.url + "/api/flags/reload", timeout=5)
        assert "false" == run(
            daemon,
            "curl http://localhost:3001/api/status | jq '.selfHealing.enabled'",
        )
        run(daemon, 'echo "FEATURE_AUTO_HEALING_ENABLED=true" >> .env.local')
        httpx.post(daemon.url + "/api/flags/reload", timeout=5)
        assert "true" == run(
            daemon,
            "curl http://localhost:3001/api/status | jq '.selfHealing.enabled'",
        )
        # The GNU form of the guide's `sed -i ''` removes the lines.
        run(daemon, "sed -i '/FEATURE_AUTO_HEALING_ENABLED/d' .env.local")
        assert "" == run(daemon, "cat .env.local")


class TestLogs:
    def test_the_guides_greps_find_tagged_lines(
        self, daemon: DaemonProcess
    ) -> None:
        """grep "SelfHealing" / "CircuitBreaker" / "BackgroundTaskManager"
        logs/*.log each find their component's lines."""
        httpx.post(
            daemon.url + "/api/circuit-breakers/self-healing-main/reset",
            json={"reason": "drill"},
            timeout=5,
        )
        httpx.post(
            daemon.url + "/api/system/heal/resume",
            json={"reason": "drill"},
            timeout=5,
        )
        for tag in ("SelfHealing", "CircuitBreaker", "BackgroundTaskManager"):
            found = run(daemon, f'grep "{tag}" logs/*.log')
            assert f"[{tag}]" in found, tag
