"""Settings from the process environment, ``.env.local`` and ``.env``.

The daemon reads ``FEATURE_*``, ``ANTHROPIC_*``, ``SELFHEAL_*`` and ``DEBUG``
from, strongest first: the process environment, ``.env.local``, ``.env``
(both in one directory, by default the working directory). Within a file the
last line for a name wins, so the guide's ``echo "X=true" >> .env.local``
re-enables what an earlier line disabled.

A malformed line or an unreadable file never raises: it becomes a
ConfigError naming the file (and line) in :attr:`EnvSettings.errors`, and
the rest of the file still counts.
"""

from __future__ import annotations

import os
import re

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream

from selfhealing._logging import mask_secrets
from selfhealing.exceptions import ConfigError


__all__ = [
    "DOTENV",
    "DOTENV_LOCAL",
    "ENVIRONMENT",
    "EnvSettings",
    "Setting",
    "read_env_file",
]

ENVIRONMENT = "env"
DOTENV_LOCAL = ".env.local"
DOTENV = ".env"

# Weakest first: each later layer overrides the ones before it.
_FILES = (DOTENV, DOTENV_LOCAL)
_NEWLINE = re.compile(r"\r\n|\n|\r")
_SNIPPET_LENGTH = 60


@dataclass(frozen=True, slots=True)
class Setting:
    """One value and where it came from.

    *source* is ``"env"``, ``".env.local"`` or ``".env"``; *file* is the
    file as shown to operators (``".env.local"``) and *line* its 1-based
    line, both None for the process environment.
    """

    name: str
    value: str
    source: str
    file: str | None = None
    line: int | None = None

    @property
    def where(self) -> str:
        """``FILE:LINE`` for a file, ``environment`` for the process env."""
        if self.file is None:
            return "environment"
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}"

    def __repr__(self) -> str:
        # Settings hold API keys: never let a repr leak one.
        return (
            f"Setting(name={self.name!r}, value={mask_secrets(self.value)!r},"
            f" source={self.source!r}, file={self.file!r}, line={self.line!r})"
        )


def _display(path: Path) -> str:
    """Show *path* relative to the working directory when it lies below it."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return str(path)


def _snippet(text: str) -> str:
    text = mask_secrets(text.strip())
    if len(text) > _SNIPPET_LENGTH:
        text = text[: _SNIPPET_LENGTH - 3] + "..."
    return text


def _first_line(string: str, marked_line: int) -> int:
    # python-dotenv marks a binding before the blank lines that precede it,
    # so its line number can point at a blank line: skip those newlines.
    leading = string[: len(string) - len(string.lstrip())]
    return marked_line + len(_NEWLINE.findall(leading))


def read_env_file(
    path: Path, *, source: str | None = None
) -> tuple[dict[str, Setting], list[ConfigError]]:
    """Parse one dotenv file into settings (last line wins) and errors.

    A missing file gives ``({}, [])``. An unreadable file (permissions, a
    directory, not UTF-8) gives no settings and one ConfigError naming the
    file. A malformed line gives a ConfigError naming ``FILE:LINE`` and the
    other lines still count. *source* defaults to the file's name.
    """
    path = Path(path)
    display = _display(path)
    source = path.name if source is None else source
    try:
        with path.open(encoding="utf-8") as stream:
            bindings = list(parse_stream(stream))
    except FileNotFoundError:
        return {}, []
    except UnicodeDecodeError as exc:
        return {}, [
            ConfigError(
                f"cannot read: not UTF-8 ({exc.reason})", where=display
            )
        ]
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return {}, [ConfigError(f"cannot read: {reason}", where=display)]

    settings: dict[str, Setting] = {}
    errors: list[ConfigError] = []
    for binding in bindings:
        line = _first_line(binding.original.string, binding.original.line)
        where = f"{display}:{line}"
        if binding.error:
            errors.append(
                ConfigError(
                    "malformed line, expected NAME=VALUE: "
                    f"{_snippet(binding.original.string)!r}",
                    where=where,
                )
            )
        elif binding.key is None:
            continue  # a comment or blank lines
        elif binding.value is None:
            errors.append(
                ConfigError(
                    f"{binding.key} has no value, expected "
                    f"{binding.key}=VALUE",
                    where=where,
                )
            )
        else:
            settings[binding.key] = Setting(
                name=binding.key,
                value=binding.value,
                source=source,
                file=display,
                line=line,
            )
    return settings, errors


class EnvSettings:
    """Layered settings: process environment > ``.env.local`` > ``.env``.

    *directory* holds the two files (default: the working directory at
    :meth:`reload` time); None reads no files. *environ* stands in for the
    process environment (None means ``os.environ``), read at :meth:`reload`
    time. The constructor reads once. Readers see either the old or the new
    settings, never a mix: :meth:`reload` swaps whole dicts.
    """

    __slots__ = ("_directory", "_environ", "_settings", "errors")

    def __init__(
        self,
        directory: Path | str | None = ".",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._directory = None if directory is None else Path(directory)
        self._environ = environ
        self._settings: dict[str, Setting] = {}
        self.errors: tuple[ConfigError, ...] = ()
        self.reload()

    @property
    def directory(self) -> Path | None:
        """The directory holding ``.env`` and ``.env.local``, if any."""
        return self._directory

    def reload(self) -> None:
        """Re-read both files and the environment."""
        merged: dict[str, Setting] = {}
        errors: list[ConfigError] = []
        if self._directory is not None:
            for name in _FILES:
                found, problems = read_env_file(self._directory / name)
                merged.update(found)
                errors.extend(problems)
        environ = os.environ if self._environ is None else self._environ
        for name, value in environ.items():
            merged[name] = Setting(name=name, value=value, source=ENVIRONMENT)
        self._settings = merged
        self.errors = tuple(errors)

    def get(self, name: str) -> Setting | None:
        """The strongest setting for *name*, or None."""
        return self._settings.get(name)

    def value(self, name: str, default: str | None = None) -> str | None:
        """The strongest value for *name*, or *default*."""
        setting = self._settings.get(name)
        return default if setting is None else setting.value

    def names(self, prefix: str = "") -> list[str]:
        """Sorted names that start with *prefix*."""
        return sorted(n for n in self._settings if n.startswith(prefix))

    def __contains__(self, name: object) -> bool:
        return name in self._settings

    def __repr__(self) -> str:
        return (
            f"EnvSettings(directory={self._directory!r}, "
            f"settings={len(self._settings)}, errors={len(self.errors)})"
        )
