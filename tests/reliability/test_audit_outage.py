"""The audit trail cannot write: the state directory's disk is full, or
another process holds the database locked.

While it lasts the daemon goes on healing, the status says WARNING about
the audit trail, and the events wait in memory; once the disk frees or the
lock goes, every waiting event lands, in order, none dropped.

Three ways in: a real tmpfs that fills up (needs the right to mount), the
same SQLITE_FULL through ``PRAGMA max_page_count`` (no root needed), and a
separate Python process holding ``BEGIN EXCLUSIVE``.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import (
    DaemonProcess,
    LiveDaemon,
    Served,
    events,
    integrity,
    status,
    wait_for,
)


pytestmark = pytest.mark.slow

TARGET = {
    "engine": {"backoff_base": "50ms", "backoff_max": "200ms"},
    "targets": [
        {
            "name": "api",
            "actions": ["repair"],
            "verify_timeout": "5s",
            "verify_settle": "0s",
            "relapse_window": "0s",
            "check": {
                "type": "command",
                "command": ["test", "-f", "healthy"],
                "interval": "100ms",
                "timeout": "2s",
                "failure_threshold": 1,
            },
        }
    ],
    "actions": [
        {"name": "repair", "type": "command", "command": ["touch", "healthy"]}
    ],
}
CONFIG = """
[state]
dir = "{state}"

[engine]
backoff_base = "50ms"
backoff_max = "200ms"

[[targets]]
name = "api"
actions = ["repair"]
verify_timeout = "5s"
verify_settle = "0s"
relapse_window = "0s"
[targets.check]
type = "command"
command = ["test", "-f", "healthy"]
interval = "100ms"
timeout = "2s"
failure_threshold = 1

[[actions]]
name = "repair"
type = "command"
command = ["touch", "healthy"]
"""
# Holds the write lock of the database in argv[1] until stdin closes.
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
db.close()
"""


def outage(
    daemon: Served,
    directory: Path,
    *,
    database: Path,
    inject: Callable[[], object],
    release: Callable[[], object],
    figures: dict[str, Any],
) -> None:
    """Inject the fault, heal through it, release it, count the catch-up."""
    wait_for(
        lambda: status(daemon)["targets"][0]["health"] == "healthy",
        what="api healthy",
    )
    # The last event written and the count written, read while nothing
    # is being committed (the same count before and after).
    while True:
        trail = status(daemon)["auditTrail"]
        last_written = events(daemon)[-1]["id"]
        if trail["pending"] == 0 and (
            status(daemon)["auditTrail"]["written"] == trail["written"]
        ):
            break
        time.sleep(0.05)
    assert (True, 0) == (trail["ok"], trail["dropped"])
    written_before = trail["written"]

    inject()
    # Operator events (a flag reload each) until a write fails: the first
    # may still fit in what the database had allocated.
    deadline = time.monotonic() + 30
    while status(daemon)["auditTrail"]["ok"]:
        assert time.monotonic() < deadline, "the audit trail kept writing"
        httpx.post(daemon.url + "/api/flags/reload", timeout=5)
        time.sleep(0.05)
    failing = status(daemon)
    healed_before = failing["selfHealing"]["successfulHealings"]

    (directory / "healthy").unlink()  # break the target meanwhile
    wait_for(
        lambda: (
            status(daemon)["selfHealing"]["successfulHealings"]
            == healed_before + 1
            and status(daemon)["targets"][0]["health"] == "healthy"
        ),
        what="a healing while the audit trail cannot write",
    )
    during = status(daemon)
    trail = during["auditTrail"]
    assert trail["ok"] is False
    assert "warning" == during["status"]
    [issue] = [i for i in during["issues"] if "Audit trail" in i]
    assert issue.startswith("WARNING: Audit trail cannot write (")
    assert any("Free disk space" in r for r in during["recommendations"])
    # The healing's events wait: none is in the database yet.
    assert trail["pending"] >= 4
    assert [] == events(daemon, kind="healing.*", since=last_written)
    pending = trail["pending"]
    written_during = trail["written"]

    released = time.monotonic()
    release()
    wait_for(
        lambda: (
            status(daemon)["auditTrail"]["ok"]
            and status(daemon)["auditTrail"]["pending"] == 0
        ),
        what="the audit trail to catch up",
    )
    caught_up = time.monotonic() - released
    trail = status(daemon)["auditTrail"]
    assert 0 == trail["dropped"]
    assert "healthy" == status(daemon)["status"]
    landed = events(daemon, since=last_written)
    # Everything recorded since the fault is in the database, in order.
    assert len(landed) == trail["written"] - written_before
    assert trail["written"] - written_during >= pending
    kinds = [e["kind"] for e in landed if e["target"] == "api"]
    assert [
        "target.unhealthy",
        "healing.attempted",
        "action.run",
        "target.recovered",
        "healing.succeeded",
    ] == kinds
    ids = [e["id"] for e in landed]
    assert ids == sorted(set(ids))
    assert [("ok",)] == integrity(database)
    figures.update(
        {
            "events pending at release": pending,
            "events landed after the fault": len(landed),
            "dropped": trail["dropped"],
            "caught up within (s)": round(caught_up, 2),
            "last error": during["auditTrail"]["lastError"],
        }
    )


@pytest.fixture(name="locker")
def _locker() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def lock(database: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        assert "locked\n" == process.stdout.readline()
        return process

    yield lock
    for process in started:
        try:
            process.communicate(timeout=10)  # closes stdin: it lets go
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


class TestAuditOutage:
    def test_disk_of_the_state_directory_fills_up(
        self,
        tmpfs: Callable[[str, int], Path],
        spawn_daemon: Callable[..., DaemonProcess],
        tmp_path: Path,
        figures: dict[str, Any],
    ) -> None:
        """A real tmpfs under .selfhealing fills up: healing goes on, the
        status warns, and the events land once a file is deleted."""
        state = tmpfs("state", 1024 * 1024)
        (tmp_path / "healthy").touch()
        daemon = spawn_daemon(CONFIG.format(state="state"))
        assert (state / "audit.db").exists()
        filler = state / "filler"

        def fill() -> None:
            chunk = b"\0" * 4096
            with (
                filler.open("wb", buffering=0) as out,
                contextlib.suppress(OSError),
            ):
                while True:  # until the disk is full
                    out.write(chunk)

        outage(
            daemon,
            tmp_path,
            database=state / "audit.db",
            inject=fill,
            release=filler.unlink,
            figures=figures,
        )
        log = (tmp_path / "logs" / "selfhealing.log").read_text()
        assert "audit store write failed" in log
        assert "database or disk is full" in log
        assert "events caught up" in log

    def test_database_reaches_its_page_limit(
        self,
        start_live: Callable[..., LiveDaemon],
        tmp_path: Path,
        figures: dict[str, Any],
    ) -> None:
        """SQLite's max_page_count (what a full disk looks like to SQLite,
        without root): same guarantees."""
        (tmp_path / "healthy").touch()
        live = start_live(TARGET)
        store = live.runtime.audit

        def limit() -> None:
            # The writer applies it before its next write; SQLite never
            # shrinks below the file's size, so this means "no growth".
            store._limit_pages(1)  # type: ignore[attr-defined]

        def unlimit() -> None:
            store._limit_pages(4_294_967_294)  # type: ignore[attr-defined]

        outage(
            live,
            tmp_path,
            database=store.path,  # type: ignore[attr-defined]
            inject=limit,
            release=unlimit,
            figures=figures,
        )

    def test_database_locked_by_another_process(
        self,
        spawn_daemon: Callable[..., DaemonProcess],
        locker: Callable[[Path], subprocess.Popen[str]],
        tmp_path: Path,
        figures: dict[str, Any],
    ) -> None:
        """Another process holds BEGIN EXCLUSIVE on audit.db: writes time
        out (busy_timeout), healing goes on, the backlog lands on release."""
        (tmp_path / "healthy").touch()
        daemon = spawn_daemon(CONFIG.format(state=".selfhealing"))
        holder: list[subprocess.Popen[str]] = []

        def release() -> None:
            process = holder.pop()
            process.communicate(timeout=10)  # closes stdin: it lets go
            assert 0 == process.returncode

        outage(
            daemon,
            tmp_path,
            database=tmp_path / ".selfhealing" / "audit.db",
            inject=lambda: holder.append(
                locker(tmp_path / ".selfhealing" / "audit.db")
            ),
            release=release,
            figures=figures,
        )
