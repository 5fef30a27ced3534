from __future__ import annotations

import pytest

from selfhealing.checks import CommandCheck
from selfhealing.childenv import (
    child_environment,
    is_daemon_secret,
    withhold,
)


pytestmark = pytest.mark.anyio

SECRET = "sk-ant-api03-" + "x" * 40


class TestChildEnvironment:
    @pytest.mark.parametrize(
        "name",
        [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_API_KEYS",
            "ANTHROPIC_API_KEY_2",
            "ANTHROPIC_AUTH_TOKEN",
            "SELFHEAL_ADMIN_TOKEN",
        ],
    )
    def test_daemon_secrets_are_withheld(
        self, name: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The daemon's keys and admin token never reach a child."""
        monkeypatch.setenv(name, SECRET)
        assert is_daemon_secret(name)
        assert name not in child_environment()

    def test_everything_else_is_inherited(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ordinary variables pass, and config env wins over them."""
        monkeypatch.setenv("APP_MODE", "prod")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
        env = child_environment({"APP_MODE": "test"})
        assert ("test", "http://127.0.0.1:1") == (
            env["APP_MODE"],
            env["ANTHROPIC_BASE_URL"],
        )

    def test_withheld_names_are_kept_too(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A key variable named in [llm] keys is withheld like the others."""
        monkeypatch.setenv("CLAUDE_KEY_PROD", SECRET)
        withhold(["CLAUDE_KEY_PROD"])
        assert "CLAUDE_KEY_PROD" not in child_environment()

    def test_explicit_env_may_pass_a_secret(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A child that needs a key gets it only through its own env."""
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
        env = child_environment({"ANTHROPIC_API_KEY": "its-own"})
        assert "its-own" == env["ANTHROPIC_API_KEY"]

    async def test_a_command_that_prints_env_shows_no_key(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A failing check that dumps its environment leaks no key."""
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
        result = await CommandCheck(
            ["sh", "-c", 'echo "key=[$ANTHROPIC_API_KEY]"; exit 1']
        ).check()
        assert "exit code 1 (expected 0): key=[]" == result.detail
