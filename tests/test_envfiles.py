from __future__ import annotations

from pathlib import Path

import pytest

import selfhealing.envfiles

from selfhealing.envfiles import EnvSettings, Setting, read_env_file
from selfhealing.exceptions import ConfigError


def write(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as stream:
        stream.writelines(f"{line}\n" for line in lines)


class TestExports:
    def test_all_is_pinned(self) -> None:
        """The public names are pinned, and each one exists."""
        names = selfhealing.envfiles.__all__

        assert [
            "DOTENV",
            "DOTENV_LOCAL",
            "ENVIRONMENT",
            "EnvSettings",
            "Setting",
            "read_env_file",
        ] == names
        assert [] == [n for n in names if not hasattr(selfhealing.envfiles, n)]


class TestReadEnvFile:
    def test_missing_file_gives_nothing(self, tmp_path: Path) -> None:
        """A file that does not exist yields no settings and no errors."""
        assert ({}, []) == read_env_file(tmp_path / ".env")

    def test_reads_values_with_their_line(self, tmp_path: Path) -> None:
        """Each binding becomes a Setting carrying its file and line."""
        path = write(tmp_path / ".env.local", "A=1", "B=two")

        settings, errors = read_env_file(path)

        assert [] == errors
        assert Setting("B", "two", ".env.local", str(path), 2) == settings["B"]

    def test_last_line_wins(self, tmp_path: Path) -> None:
        """When a name appears twice, the later line gives the value."""
        path = write(tmp_path / ".env", "X=false", "Y=1", "X=true")

        settings, _ = read_env_file(path)

        assert ("true", 3) == (settings["X"].value, settings["X"].line)

    def test_line_numbers_survive_comments_blanks_export_quotes(
        self, tmp_path: Path
    ) -> None:
        """Line numbers stay right after comments, blank lines, export and multi-line quotes."""
        path = write(
            tmp_path / ".env",
            "# a comment",
            "",
            "",
            "export A=1",
            "   ",
            "B='quoted # not a comment'  # a comment",
            'C="multi',
            'line"',
            "",
            "D=last",
        )

        settings, errors = read_env_file(path)

        assert [] == errors
        assert {"A": 4, "B": 6, "C": 7, "D": 10} == {
            name: s.line for name, s in settings.items()
        }
        assert "quoted # not a comment" == settings["B"].value
        assert "multi\nline" == settings["C"].value

    def test_malformed_line_reported_with_file_and_line(
        self, tmp_path: Path
    ) -> None:
        """A line the parser rejects is a ConfigError at FILE:LINE, and the rest still counts."""
        path = write(tmp_path / ".env", "# header", "", "A: 1", "B=2")

        settings, errors = read_env_file(path)

        assert ["B"] == list(settings)
        assert [f"{path}:3"] == [e.where for e in errors]
        assert str(errors[0]).startswith(f"{path}:3: malformed line")

    def test_bare_name_is_reported(self, tmp_path: Path) -> None:
        """A name without '=' is reported instead of silently ignored."""
        path = write(tmp_path / ".env", "A=1", "LONELY")

        settings, errors = read_env_file(path)

        assert ["A"] == list(settings)
        assert [f"{path}:2"] == [e.where for e in errors]
        assert "LONELY has no value" in str(errors[0])

    def test_malformed_line_masks_keys(self, tmp_path: Path) -> None:
        """An error quoting a malformed line never quotes an API key."""
        path = write(tmp_path / ".env", "KEY: sk-ant-api03-abcdefghijkl")

        _, errors = read_env_file(path)

        assert "abcdefgh" not in str(errors[0])
        assert "sk-ant-...ijkl" in str(errors[0])

    def test_directory_is_a_config_error(self, tmp_path: Path) -> None:
        """A directory where a file should be is a ConfigError naming it."""
        (tmp_path / ".env").mkdir()

        settings, errors = read_env_file(tmp_path / ".env")

        assert {} == settings
        assert [str(tmp_path / ".env")] == [e.where for e in errors]
        assert "cannot read" in str(errors[0])

    def test_permission_denied_is_a_config_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file that cannot be opened is a ConfigError, not a traceback."""
        path = write(tmp_path / ".env", "A=1")

        def refuse(self: Path, *args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "open", refuse)

        settings, errors = read_env_file(path)

        assert {} == settings
        assert [f"{path}: cannot read: Permission denied"] == [
            str(e) for e in errors
        ]

    def test_not_utf8_is_a_config_error(self, tmp_path: Path) -> None:
        """Bytes that are not UTF-8 give a ConfigError naming the file."""
        path = tmp_path / ".env"
        path.write_bytes(b"A=\xff\xfe\n")

        _, errors = read_env_file(path)

        assert 1 == len(errors)
        assert "not UTF-8" in str(errors[0])

    def test_display_path_is_relative_below_cwd(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file below the working directory is shown relative to it."""
        monkeypatch.chdir(tmp_path)
        write(tmp_path / ".env.local", "A=1")

        settings, _ = read_env_file(tmp_path / ".env.local")

        assert ".env.local:1" == settings["A"].where


class TestSetting:
    def test_where_for_environment(self) -> None:
        """A setting from the process environment is located as 'environment'."""
        assert "environment" == Setting("A", "1", "env").where

    def test_repr_masks_keys(self) -> None:
        """The repr of a setting never shows an API key."""
        setting = Setting(
            "ANTHROPIC_API_KEY", "sk-ant-api03-secretvalue", "env"
        )

        assert "secretvalue" not in repr(setting)
        assert "sk-ant-...alue" in repr(setting)


class TestEnvSettings:
    def test_precedence_env_over_local_over_dotenv(
        self, tmp_path: Path
    ) -> None:
        """The environment beats .env.local, which beats .env."""
        write(tmp_path / ".env", "A=dotenv", "B=dotenv", "C=dotenv")
        write(tmp_path / ".env.local", "A=local", "B=local")

        settings = EnvSettings(tmp_path, environ={"A": "env"})

        assert {
            "A": ("env", "env"),
            "B": ("local", ".env.local"),
            "C": ("dotenv", ".env"),
        } == {
            n: (settings.value(n), settings.get(n).source)  # type: ignore[union-attr]
            for n in "ABC"
        }

    def test_missing_names(self, tmp_path: Path) -> None:
        """An unknown name gives None, or the default passed to value()."""
        settings = EnvSettings(tmp_path, environ={})

        assert None is settings.get("NOPE")
        assert "fallback" == settings.value("NOPE", "fallback")
        assert None is settings.value("NOPE")

    def test_no_directory_reads_no_files(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With directory=None only the environment counts."""
        monkeypatch.chdir(tmp_path)
        write(tmp_path / ".env", "A=file")

        settings = EnvSettings(None, environ={"B": "env"})

        assert ["B"] == settings.names()

    def test_default_directory_is_working_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """By default the files are read from the working directory."""
        monkeypatch.chdir(tmp_path)
        write(tmp_path / ".env.local", "", "ANTHROPIC_API_KEY=sk-ant-x")

        settings = EnvSettings(environ={})

        assert Setting(
            "ANTHROPIC_API_KEY", "sk-ant-x", ".env.local", ".env.local", 2
        ) == settings.get("ANTHROPIC_API_KEY")

    def test_default_environ_is_process_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without an environ mapping, os.environ is read at reload time."""
        monkeypatch.delenv("SELFHEAL_TEST_VALUE", raising=False)
        settings = EnvSettings(tmp_path)
        assert None is settings.get("SELFHEAL_TEST_VALUE")

        monkeypatch.setenv("SELFHEAL_TEST_VALUE", "42")
        settings.reload()

        assert Setting("SELFHEAL_TEST_VALUE", "42", "env") == settings.get(
            "SELFHEAL_TEST_VALUE"
        )

    def test_reload_sees_appended_lines(self, tmp_path: Path) -> None:
        """reload() picks up a line appended to .env.local (the guide's echo >>)."""
        path = write(tmp_path / ".env.local", "DEBUG=")
        settings = EnvSettings(tmp_path, environ={})

        append(path, "DEBUG=self-healing:*")
        settings.reload()

        assert "self-healing:*" == settings.value("DEBUG")

    def test_names_filters_by_prefix(self, tmp_path: Path) -> None:
        """names() lists sorted names starting with the prefix."""
        write(tmp_path / ".env", "FEATURE_B=1", "OTHER=2")

        settings = EnvSettings(
            tmp_path, environ={"FEATURE_A": "0", "SELFHEAL_X": "y"}
        )

        assert ["FEATURE_A", "FEATURE_B"] == settings.names("FEATURE_")
        assert ["FEATURE_A", "FEATURE_B", "OTHER", "SELFHEAL_X"] == (
            settings.names()
        )
        assert "OTHER" in settings

    def test_errors_from_both_files(self, tmp_path: Path) -> None:
        """Malformed lines of both files are listed, .env first."""
        write(tmp_path / ".env", "A=1", "bad line here")
        write(tmp_path / ".env.local", "oops: yes")

        settings = EnvSettings(tmp_path, environ={})

        assert [
            f"{tmp_path / '.env'}:2",
            f"{tmp_path / '.env.local'}:1",
        ] == [e.where for e in settings.errors]
        assert all(isinstance(e, ConfigError) for e in settings.errors)

    def test_errors_clear_after_fix(self, tmp_path: Path) -> None:
        """Fixing the file and reloading clears the errors."""
        path = write(tmp_path / ".env", "bad line here")
        settings = EnvSettings(tmp_path, environ={})
        assert 1 == len(settings.errors)

        write(path, "GOOD=1")
        settings.reload()

        assert [] == list(settings.errors)

    def test_unreadable_file_does_not_hide_the_other(
        self, tmp_path: Path
    ) -> None:
        """An unreadable .env.local is an error while .env still counts."""
        write(tmp_path / ".env", "A=1")
        (tmp_path / ".env.local").mkdir()

        settings = EnvSettings(tmp_path, environ={})

        assert "1" == settings.value("A")
        assert [str(tmp_path / ".env.local")] == [
            e.where for e in settings.errors
        ]

    def test_repr_is_short(self, tmp_path: Path) -> None:
        """The repr shows counts, never values."""
        settings = EnvSettings(tmp_path, environ={"K": "sk-ant-secretsecret"})

        assert "secret" not in repr(settings)
        assert tmp_path == settings.directory
