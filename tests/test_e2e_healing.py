"""End to end: `selfheal run` as a real subprocess, real supervised processes,
real HTTP on loopback, and the operations guide's own commands."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from collections.abc import Callable
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from support import (
    DaemonProcess,
    events,
    free_port,
    status,
    wait_for,
    wait_healthy,
)


pytestmark = pytest.mark.slow

PY = json.dumps(sys.executable)


def guide(daemon: DaemonProcess, line: str) -> str:
    """Run one of the guide's shell lines against this daemon's port."""
    port = daemon.url.rsplit(":", 1)[1]
    command = line.replace("localhost:3001", f"localhost:{port}")
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=daemon.directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert 0 == done.returncode, (command, done.stderr)
    return done.stdout.strip()


def web_config(port: int, **target: str) -> str:
    extra = "".join(f"{key} = {value}\n" for key, value in target.items())
    return f"""
[engine]
backoff_base = "50ms"
backoff_max = "200ms"

[[processes]]
name = "web"
command = [{PY}, "-m", "selfhealing.demo.service", "serve", "--port", "{port}", "--dir", "."]
stop_timeout = "2s"

[[targets]]
name = "web"
actions = ["restart-web"]
verify_timeout = "5s"
verify_settle = "100ms"
{extra}[targets.check]
type = "http"
url = "http://127.0.0.1:{port}/health"
interval = "200ms"
timeout = "300ms"
failure_threshold = 2

[[actions]]
name = "restart-web"
type = "restart_process"
process = "web"
"""


def write_scenes(directory: Path, *scenes: dict[str, object]) -> None:
    (directory / "scenes.json").write_text(
        json.dumps(
            {"epoch": time.time(), "cycle": 3600, "scenes": list(scenes)}
        )
    )


DORMANT_CONFIG = """
[engine]
backoff_base = "10ms"
backoff_max = "80ms"

[breakers."self-healing-main"]
failure_threshold = 20
recovery_timeout = "50ms"

[[targets]]
name = "api"
actions = ["flush-cache"]
verify_timeout = "150ms"
verify_settle = "0s"
relapse_window = "0s"
[targets.check]
type = "command"
command = ["test", "-f", "root-cause-fixed"]
interval = "50ms"
timeout = "2s"
failure_threshold = 1
[targets.breaker]
failure_threshold = 20
recovery_timeout = "50ms"

[[actions]]
name = "flush-cache"
type = "command"
command = ["true"]
"""


class TestSupervisedHealing:
    def test_killed_process_is_restarted_and_verified(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """kill -9 of a supervised process: restarted, verified, counted."""
        write_scenes(tmp_path)
        daemon = spawn_daemon(web_config(free_port()))
        wait_for(
            lambda: status(daemon)["targets"][0]["health"] == "healthy",
            what="web healthy",
        )
        old_pid = status(daemon)["processes"][0]["pid"]
        os.kill(old_pid, signal.SIGKILL)
        wait_for(
            lambda: status(daemon)["selfHealing"]["successfulHealings"] == 1,
            what="verified healing",
        )
        document = status(daemon)
        process = document["processes"][0]
        assert process["pid"] not in (None, old_pid)
        assert (1, -9, "running") == (
            process["restarts"],
            process["lastExitCode"],
            process["state"],
        )
        assert "healthy" == document["targets"][0]["health"]
        assert (1, 0) == (
            document["selfHealing"]["totalAttempts"],
            document["selfHealing"]["consecutiveFailures"],
        )
        kinds = [e["kind"] for e in events(daemon, target="web")]
        assert kinds.index("process.exited") < kinds.index("healing.succeeded")

    def test_hung_endpoint_is_restarted(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """An endpoint that stops answering times out, is restarted, heals."""
        write_scenes(tmp_path)
        daemon = spawn_daemon(web_config(free_port()))
        wait_for(
            lambda: status(daemon)["targets"][0]["health"] == "healthy",
            what="web healthy",
        )
        # The running copy hangs from now on; a restarted copy does not.
        write_scenes(tmp_path, {"at": 0, "kind": "hang"})
        wait_for(
            lambda: status(daemon)["selfHealing"]["successfulHealings"] == 1,
            what="healing of the hang",
        )
        unhealthy = events(daemon, kind="target.unhealthy")
        assert "timed out after 0.300s" in unhealthy[0]["message"]
        actions = events(daemon, kind="action.run")
        assert "restart-web" == actions[0]["data"]["action"]

    def test_stopping_the_daemon_stops_its_processes(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """SIGTERM: exit code 0 within 10 s, and no child left running."""
        write_scenes(tmp_path)
        daemon = spawn_daemon(web_config(free_port()))
        wait_for(
            lambda: status(daemon)["processes"][0]["pid"] is not None,
            what="the process started",
        )
        child = status(daemon)["processes"][0]["pid"]
        started = time.monotonic()
        assert 0 == daemon.stop(signal.SIGTERM)
        assert time.monotonic() - started < 10
        assert not psutil.pid_exists(child) or (
            psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        )


class TestDormantPath:
    def test_never_working_fix_ends_dormant_then_guide_recovers(
        self, spawn_daemon: Callable[..., DaemonProcess]
    ) -> None:
        """A fix that never works walks the backoff to dormant mode after 10
        failures; the guide's procedure brings the system back."""
        daemon = spawn_daemon(DORMANT_CONFIG)
        wait_for(
            lambda: status(daemon)["selfHealing"]["isDormant"],
            what="dormant mode",
        )
        # Step 1 of the guide, verbatim.
        assert "true" == guide(
            daemon,
            "curl http://localhost:3001/api/status | jq '.selfHealing.isDormant'",
        )
        assert '"Exceeded maximum consecutive failures (10)"' == guide(
            daemon,
            "curl http://localhost:3001/api/status | jq '.selfHealing.dormantReason'",
        )
        failed = events(daemon, kind="healing.failed")
        assert [20, 40, 80, 80, 80, 80, 80, 80, 80, 80] == [
            e["data"]["backoffDelay"] for e in failed
        ]
        assert list(range(1, 11)) == [
            e["data"]["consecutiveFailures"] for e in failed
        ]
        # Dormant: nothing more is attempted, however long it stays so.
        time.sleep(0.5)
        document = status(daemon)
        assert (10, 0, 10) == (
            document["selfHealing"]["totalAttempts"],
            document["selfHealing"]["successfulHealings"],
            document["selfHealing"]["failedHealings"],
        )
        assert "critical" == document["status"]
        assert ["CRITICAL: Self-Healing Engine in DORMANT mode"] == [
            i for i in document["issues"] if i.startswith("CRITICAL")
        ]
        # Each streak of skips is recorded once, not once per probe.
        reasons = [e["reason"] for e in events(daemon, kind="healing.skipped")]
        assert "dormant" == reasons[-1]
        assert 1 == reasons.count("dormant")
        assert set(reasons) <= {"backoff", "dormant"}
        assert len(reasons) <= 10

        # Step 2: fix the root cause. Step 3: the guide's resume call.
        (daemon.directory / "root-cause-fixed").touch()
        answer = json.loads(
            guide(
                daemon,
                "curl -X POST http://localhost:3001/api/system/heal/resume \\\n"
                '  -H "Content-Type: application/json" \\\n'
                '  -d \'{"reason": "Valid API keys added"}\'',
            )
        )
        assert answer["resumed"] is True
        # Step 4's four queries, verbatim.
        assert "false" == guide(
            daemon,
            "curl http://localhost:3001/api/status | jq '.selfHealing.isDormant'",
        )
        assert "0" == guide(
            daemon,
            "curl http://localhost:3001/api/status | jq '.selfHealing.consecutiveFailures'",
        )
        assert '"CLOSED"' == guide(
            daemon,
            "curl http://localhost:3001/api/status | jq "
            "'.circuitBreakers[] | select(.name == \"self-healing-main\").state'",
        )
        wait_for(
            lambda: status(daemon)["targets"][0]["health"] == "healthy",
            what="api healthy",
        )
        assert guide(
            daemon, "curl http://localhost:3001/api/status | jq '.status'"
        ) in ('"healthy"', '"warning"')
        resumed = events(daemon, kind="engine.dormant_exited")
        assert "Valid API keys added" == resumed[-1]["reason"]

    def test_healing_disabled_in_env_local(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """FEATURE_AUTO_HEALING_ENABLED=false in .env.local: nothing attempted."""
        (tmp_path / ".env.local").write_text(
            "FEATURE_AUTO_HEALING_ENABLED=false\n"
        )
        daemon = spawn_daemon(DORMANT_CONFIG)
        wait_for(
            lambda: status(daemon)["targets"][0]["health"] == "unhealthy",
            what="api unhealthy",
        )
        time.sleep(0.5)
        document = status(daemon)
        assert document["selfHealing"]["enabled"] is False
        assert 0 == document["selfHealing"]["totalAttempts"]
        assert any(
            "Automatic healing is disabled" in i for i in document["issues"]
        )
        skipped = events(daemon, kind="healing.skipped")
        assert ["disabled"] == [e["reason"] for e in skipped]

    def test_invalid_flag_refuses_to_start(self, tmp_path: Path) -> None:
        """An invalid flag value: no start, a message naming flag and file."""
        (tmp_path / ".env.local").write_text(
            "# emergency\nFEATURE_AUTO_HEALING_ENABLED=flase\n"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "selfhealing",
                "run",
                "--port",
                str(free_port()),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert 2 == done.returncode
        assert (
            "selfheal: .env.local:2: FEATURE_AUTO_HEALING_ENABLED=flase is not "
            "a boolean (use true/false, 1/0, yes/no, on/off)\n"
        ) == done.stderr
        assert "" == done.stdout


class TestCrashSafety:
    def test_kill_9_during_healing_loses_no_recorded_event(
        self, spawn_daemon: Callable[..., DaemonProcess], tmp_path: Path
    ) -> None:
        """kill -9 of the daemon mid-healing: every event it reported as
        recorded survives, the database is intact, no orphan remains."""
        write_scenes(tmp_path, {"at": 0, "kind": "sticky"})
        port = free_port()
        config = web_config(port).replace(
            'actions = ["restart-web"]',
            'actions = ["restart-web", "restart-web"]',
        )
        daemon = spawn_daemon(config)
        wait_for(
            lambda: any(
                e["kind"] == "action.run" for e in events(daemon, target="web")
            ),
            what="healing under way",
        )
        reported = events(daemon)
        child = status(daemon)["processes"][0]["pid"]
        daemon.process.kill()
        daemon.process.communicate(timeout=10)
        assert reported

        database = tmp_path / ".selfhealing" / "audit.db"
        with sqlite3.connect(database) as connection:
            assert [("ok",)] == connection.execute(
                "PRAGMA integrity_check"
            ).fetchall()

        api_port = int(daemon.url.rsplit(":", 1)[1])
        restarted = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "selfhealing",
                "run",
                "--port",
                str(api_port),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_healthy(daemon.url, restarted)
            again = DaemonProcess(daemon.url, restarted, tmp_path)
            after = {e["id"]: e for e in events(again, limit=1000)}
            for event in reported:
                assert event == after[event["id"]]
            ids = [e["id"] for e in events(again)]
            assert len(ids) == len(set(ids))
            # The orphaned child of the killed daemon was stopped.
            assert not psutil.pid_exists(child) or (
                psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            )
        finally:
            restarted.send_signal(signal.SIGTERM)
            restarted.communicate(timeout=15)
