"""A check that hangs for ever, and an action that ignores SIGTERM.

Both start a child of their own, so "killed" has to mean the whole process
group. What must hold: the check's timeout fires on every probe and the
target is reported unhealthy, the action's timeout fires and its attempt is
recorded as failed, every process either of them started is gone soon
after its deadline, and the engine goes on: the probes keep their
schedule, and another target breaking meanwhile is healed.
"""

from __future__ import annotations

import json
import sys
import time

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import DaemonProcess, events, running, status, wait_for


pytestmark = pytest.mark.slow

# Records "pid child wall-time" in argv[1], then waits for ever. With
# argv[2] == "stubborn", it and its child ignore SIGTERM.
SPAWNER = """
import os, signal, subprocess, sys, time
stubborn = sys.argv[2] == "stubborn"
if stubborn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time\\n"
    + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if stubborn else "")
    + "time.sleep(10**6)"])
with open(sys.argv[1], "a") as out:
    out.write(f"{os.getpid()} {child.pid} {time.time()}\\n")
while True:
    time.sleep(1000)
"""

CHECK_TIMEOUT = 0.3
ACTION_TIMEOUT = 0.5
CONFIG = """
[engine]
backoff_base = "50ms"
backoff_max = "200ms"
max_consecutive_failures = 100

[[targets]]
name = "hung"
[targets.check]
type = "command"
command = [{python}, "spawner.py", "hung.pids", "plain"]
interval = "200ms"
timeout = "{check_timeout}s"
failure_threshold = 1

[[targets]]
name = "stubborn"
actions = ["ignore-term"]
verify_timeout = "300ms"
verify_settle = "0s"
relapse_window = "0s"
[targets.check]
type = "command"
command = ["test", "-f", "stubborn-ok"]
interval = "100ms"
timeout = "2s"
failure_threshold = 1

[[targets]]
name = "other"
actions = ["fix-other"]
verify_timeout = "5s"
verify_settle = "0s"
relapse_window = "0s"
[targets.check]
type = "command"
command = ["test", "-f", "other-ok"]
interval = "100ms"
timeout = "2s"
failure_threshold = 1

[[actions]]
name = "ignore-term"
type = "command"
command = [{python}, "spawner.py", "stubborn.pids", "stubborn"]
timeout = "{action_timeout}s"

[[actions]]
name = "fix-other"
type = "command"
command = ["touch", "other-ok"]
"""


def target(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in document["targets"] if t["name"] == name)


def spawned(path: Path) -> list[tuple[int, int, float]]:
    """(pid, child, started) for every run recorded in *path*."""
    if not path.exists():
        return []
    return [
        (int(pid), int(child), float(at))
        for pid, child, at in (
            line.split() for line in path.read_text().splitlines()
        )
    ]


def overdue_survivors(path: Path, deadline: float) -> list[int]:
    """Processes recorded in *path* still running *deadline* seconds
    (plus a second of grace) after their run started."""
    now = time.time()
    return [
        pid
        for run, child, at in spawned(path)
        if now - at > deadline + 1.0
        for pid in (run, child)
        if running(pid)
    ]


class TestHangs:
    def test_timeouts_fire_groups_die_and_the_engine_goes_on(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        tmp_path: Path,
        figures: dict[str, Any],
    ) -> None:
        """A hung check and a SIGTERM-proof action time out, their process
        groups (children included) are killed, a failed attempt is
        recorded, and a third target is still healed on time."""
        (tmp_path / "spawner.py").write_text(SPAWNER)
        (tmp_path / "other-ok").touch()
        daemon = spawn_daemon(
            CONFIG.format(
                python=json.dumps(sys.executable),
                check_timeout=CHECK_TIMEOUT,
                action_timeout=ACTION_TIMEOUT,
            )
        )

        # The stubborn action times out: a failed attempt, on record.
        wait_for(
            lambda: len(events(daemon, kind="healing.failed")) >= 2,
            what="two failed attempts on the stubborn target",
        )
        failed = events(daemon, kind="healing.failed")
        assert {"stubborn"} == {e["target"] for e in failed}
        assert {"still unhealthy after healing"} == {
            e["data"]["error"] for e in failed
        }
        runs = events(daemon, kind="action.run", target="stubborn")
        assert runs
        for run in runs:
            assert run["data"]["ok"] is False
            assert (
                f"timed out after {ACTION_TIMEOUT:.3f}s"
                == run["data"]["detail"]
            )
            # The deadline held although SIGTERM was ignored.
            assert run["data"]["durationMs"] < ACTION_TIMEOUT * 1000 + 300

        # Meanwhile another target breaks: the engine heals it.
        broken = time.time()
        (tmp_path / "other-ok").unlink()
        wait_for(
            lambda: any(
                e["target"] == "other"
                for e in events(daemon, kind="healing.succeeded")
            ),
            what="the other target healed",
        )
        [healed] = [
            e
            for e in events(daemon, kind="healing.succeeded")
            if e["target"] == "other"
        ]
        healing_time = healed["atEpoch"] - broken
        document = status(daemon)
        assert "healthy" == target(document, "other")["health"]

        # The hung check: every probe timed out, and probes kept coming.
        hung = target(document, "hung")
        assert "unhealthy" == hung["health"]
        assert f"timed out after {CHECK_TIMEOUT:.3f}s" == hung["detail"]
        checks = hung["checks"]
        wait_for(
            lambda: target(status(daemon), "hung")["checks"] >= checks + 3,
            what="three more probes of the hung check",
            timeout=10,
        )

        # Whatever they started is gone soon after each deadline.
        (tmp_path / "stubborn-ok").touch()  # no more attempts from here
        time.sleep(1.5)
        hung_runs = spawned(tmp_path / "hung.pids")
        stubborn_runs = spawned(tmp_path / "stubborn.pids")
        assert len(hung_runs) >= 10
        assert len(stubborn_runs) >= 2
        assert [] == overdue_survivors(tmp_path / "hung.pids", CHECK_TIMEOUT)
        assert [] == overdue_survivors(
            tmp_path / "stubborn.pids", ACTION_TIMEOUT
        )

        # A clean stop leaves nothing behind at all.
        assert 0 == daemon.stop()
        left = [
            pid
            for run, child, _ in hung_runs + stubborn_runs
            for pid in (run, child)
            if running(pid)
        ]
        assert [] == left
        figures.update(
            {
                "hung probes (all timed out)": len(hung_runs),
                "stubborn action runs (all timed out)": len(stubborn_runs),
                "failed attempts recorded": len(failed),
                "processes left running": len(left),
                "other target healed in (s)": round(healing_time, 2),
            }
        )
