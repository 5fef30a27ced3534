from __future__ import annotations

import subprocess
import sys

from importlib.metadata import version


def selfheal(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "selfhealing", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestEntryPoint:
    def test_version(self) -> None:
        """`selfheal --version` prints the installed version and exits 0."""
        done = selfheal("--version")
        assert (0, f"selfheal {version('selfhealing')}\n") == (
            done.returncode,
            done.stdout,
        )

    def test_help(self) -> None:
        """`selfheal --help` describes the tool and exits 0."""
        done = selfheal("--help")
        assert 0 == done.returncode
        assert "Governed self-healing" in done.stdout

    def test_unknown_command(self) -> None:
        """A mistyped command is a usage error (exit 2), not a traceback."""
        done = selfheal("stauts")
        assert 2 == done.returncode
        assert "Traceback" not in done.stderr
