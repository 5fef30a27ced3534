"""Fixtures of the fault-injection suite (tests/reliability/).

Every scenario runs real daemons, real processes and real SQLite files;
the fixtures of tests/conftest.py (``spawn_daemon``, ``start_live``) apply
here too. Two more live here:

* ``figures``: what a scenario measured (attempts, lags, latencies). They
  are printed at the end of the run, attached to the JUnit report, and
  written as JSON to ``$SELFHEAL_RELIABILITY_RESULTS`` when that is set,
  so docs/reliability.md can quote the last result.
* ``tmpfs``: a small, real file system that can fill up (needs the right
  to mount; the test is skipped, saying why, without it).
"""

from __future__ import annotations

import json
import os
import subprocess

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


_FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture(name="figures")
def _figures(
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
) -> Iterator[dict[str, Any]]:
    """A dict a scenario fills with what it measured."""
    measured: dict[str, Any] = {}
    yield measured
    if measured:
        _FIGURES[request.node.nodeid] = measured
        for name, value in measured.items():
            record_property(name, value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for test, measured in _FIGURES.items():
        terminalreporter.write_line(test)
        for name, value in measured.items():
            terminalreporter.write_line(f"    {name}: {value}")
    target = os.environ.get("SELFHEAL_RELIABILITY_RESULTS")
    if target:
        Path(target).write_text(json.dumps(_FIGURES, indent=2, default=str))


@pytest.fixture(name="tmpfs")
def _tmpfs(tmp_path: Path) -> Iterator[Callable[[str, int], Path]]:
    """Mount a tmpfs of a given size (bytes) at tmp_path/<name>."""
    mounted: list[Path] = []

    def mount(name: str, size: int) -> Path:
        point = tmp_path / name
        point.mkdir()
        try:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", point],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            pytest.skip("cannot mount a tmpfs to fill up: no mount command")
        if done.returncode != 0:
            pytest.skip(
                "cannot mount a tmpfs to fill up (needs root or "
                f"CAP_SYS_ADMIN): {done.stderr.strip() or done.returncode}"
            )
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        # Lazy: a daemon the test killed may still hold a file open.
        subprocess.run(["umount", "-l", point], check=False)
