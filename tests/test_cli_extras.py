from __future__ import annotations

from typer.testing import CliRunner

from selfhealing.cli import app
from support import LiveDaemon


class TestFlagsClear:
    def test_clear_drops_the_override(self, live: LiveDaemon) -> None:
        """flags clear returns a flag to its file or default source."""
        CliRunner().invoke(
            app,
            [
                "flags",
                "set",
                "FEATURE_AUTO_HEALING_ENABLED",
                "off",
                "--reason",
                "drill",
                "--url",
                live.url,
            ],
        )
        assert live.runtime.flags.auto_healing is False
        result = CliRunner().invoke(
            app,
            [
                "flags",
                "clear",
                "FEATURE_AUTO_HEALING_ENABLED",
                "--reason",
                "drill over",
                "--url",
                live.url,
            ],
        )
        assert 0 == result.exit_code
        assert "FEATURE_AUTO_HEALING_ENABLED=true (source default)" in (
            result.stdout
        )
        assert live.runtime.flags.auto_healing is True


class TestKeysExitCode:
    def test_no_key_is_fine(self, live: LiveDaemon) -> None:
        """With no key at all the list says how to add one and exits 0."""
        result = CliRunner().invoke(app, ["llm", "keys", "--url", live.url])
        assert 0 == result.exit_code
        assert "no key" in result.stdout

    def test_all_failed_is_critical(self, start_live: object) -> None:
        """Keys configured and none active: exit 2, as status does."""
        live = start_live(  # type: ignore[operator]
            environ={"ANTHROPIC_API_KEY": "sk-ant-api03-" + "a" * 40}
        )
        key = live.runtime.keys.snapshot().keys[0].id
        live.on_loop(
            lambda: live.runtime.keys.report_failed(
                key, status=401, message="invalid x-api-key"
            )
        )
        result = CliRunner().invoke(
            app, ["llm", "keys", "list", "--url", live.url]
        )
        assert 2 == result.exit_code
        assert "1 failed" in result.stdout
