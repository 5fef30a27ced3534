"""Feature flags: four switches, each with its value and where it came from.

Sources, strongest first: a runtime override from the API (``api``), the
process environment (``env``), ``.env.local``, ``.env``, the config file
(``config``), the default (``default``, always true). Values are
true/false/1/0/yes/no/on/off in any case; anything else is a
FlagValueError reading ``FILE:LINE: NAME=VALUE is not a boolean (...)``.

At construction an invalid value raises (the daemon refuses to start). On
:meth:`FeatureFlags.reload` an invalid value keeps the flag's old value and
is kept in :attr:`FeatureFlags.errors` until a clean reload.

Reading a flag is one dict lookup: writers build a new dict and swap it in,
so a reader on another thread never sees a half-applied reload.
"""

from __future__ import annotations

import logging
import threading

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from selfhealing.clock import Clock, system_clock
from selfhealing.envfiles import EnvSettings
from selfhealing.events import Event, EventBus, EventKind
from selfhealing.exceptions import (
    ConfigError,
    FlagValueError,
    UnknownNameError,
    validate_reason,
)


__all__ = [
    "AUTO_DETECTION",
    "AUTO_HEALING",
    "FLAG_NAMES",
    "PREVENTIVE_HEALING",
    "PROCESS_MONITORING",
    "FeatureFlags",
    "FlagSource",
    "FlagValue",
    "parse_bool",
]

_log = logging.getLogger("selfhealing.flags")

AUTO_HEALING = "FEATURE_AUTO_HEALING_ENABLED"
AUTO_DETECTION = "FEATURE_AUTO_DETECTION_MONITORING"
PREVENTIVE_HEALING = "FEATURE_PREVENTIVE_HEALING_ENABLED"
PROCESS_MONITORING = "FEATURE_PROCESS_MONITORING_ENABLED"

FLAG_NAMES: tuple[str, ...] = (
    AUTO_HEALING,
    AUTO_DETECTION,
    PREVENTIVE_HEALING,
    PROCESS_MONITORING,
)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_COMPONENT = "FeatureFlags"
_ENVIRONMENT_FILE = "environment"


def parse_bool(
    value: str, *, name: str, file: str | None = None, line: int | None = None
) -> bool:
    """true/false/1/0/yes/no/on/off, any case and padding, or FlagValueError."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise FlagValueError(name, value, file=file, line=line)


class FlagSource(StrEnum):
    """Where a flag's value came from, strongest first."""

    API = "api"
    ENV = "env"
    DOTENV_LOCAL = ".env.local"
    DOTENV = ".env"
    CONFIG = "config"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class FlagValue:
    """A flag's current value and its origin.

    *file* and *line* locate a value read from a dotenv file; *reason* is
    the operator's reason for an API override.
    """

    name: str
    enabled: bool
    source: FlagSource
    file: str | None = None
    line: int | None = None
    reason: str | None = None

    @property
    def where(self) -> str | None:
        """``FILE:LINE`` for a value read from a file, else None."""
        if self.file is None:
            return None
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, object]:
        """The status shape: enabled, source, file, line (+ reason for api)."""
        shape: dict[str, object] = {
            "enabled": self.enabled,
            "source": str(self.source),
            "file": self.file,
            "line": self.line,
        }
        if self.source is FlagSource.API:
            shape["reason"] = self.reason
        return shape


def _check_config(config: Mapping[str, bool]) -> dict[str, bool]:
    checked: dict[str, bool] = {}
    for name, value in config.items():
        if name not in FLAG_NAMES:
            raise UnknownNameError("flag", name, list(FLAG_NAMES))
        if not isinstance(value, bool):
            raise FlagValueError(name, str(value), file="config", line=None)
        checked[name] = value
    return checked


class FeatureFlags:
    """The four feature flags, layered and live-reloadable.

    *settings* supplies the environment and dotenv layers; None means no
    files and an empty environment (a pure library default: only *config*
    and the defaults count). The daemon passes ``EnvSettings()``, which
    reads the process environment and the working directory's files.
    *config* maps flag names to the config file's values. Changes are
    published on *bus* as FLAG_CHANGED, reload errors as FLAG_ERROR.

    Raises the first FlagValueError if a flag is invalid at construction.
    """

    __slots__ = (
        "_base",
        "_bus",
        "_clock",
        "_config",
        "_lock",
        "_overrides",
        "_settings",
        "_values",
        "errors",
    )

    def __init__(
        self,
        *,
        settings: EnvSettings | None = None,
        config: Mapping[str, bool] | None = None,
        bus: EventBus | None = None,
        clock: Clock = system_clock,
    ) -> None:
        if settings is None:
            settings = EnvSettings(directory=None, environ={})
        self._settings = settings
        self._config = _check_config(config or {})
        self._bus = bus
        self._clock = clock
        self._lock = threading.Lock()
        self._overrides: dict[str, FlagValue] = {}
        base: dict[str, FlagValue] = {}
        for name in FLAG_NAMES:
            base[name] = self._resolve(name)  # raises on an invalid value
        self._base = base
        self._values = dict(base)
        self.errors: tuple[FlagValueError, ...] = ()
        _log.debug(
            "feature flags loaded",
            extra={"facts": {n: v.enabled for n, v in base.items()}},
        )

    @property
    def settings(self) -> EnvSettings:
        """The environment and dotenv settings the flags are read from."""
        return self._settings

    # -- reading (lock-free: one dict lookup) ---------------------------------

    def is_enabled(self, name: str) -> bool:
        """Whether flag *name* is on; UnknownNameError for other names."""
        try:
            return self._values[name].enabled
        except KeyError:
            raise UnknownNameError("flag", name, list(FLAG_NAMES)) from None

    def get(self, name: str) -> FlagValue:
        """The current value of flag *name*, with its source."""
        try:
            return self._values[name]
        except KeyError:
            raise UnknownNameError("flag", name, list(FLAG_NAMES)) from None

    @property
    def auto_healing(self) -> bool:
        """FEATURE_AUTO_HEALING_ENABLED."""
        return self._values[AUTO_HEALING].enabled

    @property
    def auto_detection(self) -> bool:
        """FEATURE_AUTO_DETECTION_MONITORING."""
        return self._values[AUTO_DETECTION].enabled

    @property
    def preventive_healing(self) -> bool:
        """FEATURE_PREVENTIVE_HEALING_ENABLED."""
        return self._values[PREVENTIVE_HEALING].enabled

    @property
    def process_monitoring(self) -> bool:
        """FEATURE_PROCESS_MONITORING_ENABLED."""
        return self._values[PROCESS_MONITORING].enabled

    def snapshot(self) -> dict[str, FlagValue]:
        """Every flag's current value, in FLAG_NAMES order."""
        values = self._values
        return {name: values[name] for name in FLAG_NAMES}

    def to_dict(self) -> dict[str, object]:
        """``{"FEATURE_...": {"enabled", "source", ...}}``: status's featureFlags."""
        values = self._values
        return {name: values[name].to_dict() for name in FLAG_NAMES}

    # -- changing -------------------------------------------------------------

    def reload(self) -> tuple[FlagValueError, ...]:
        """Re-read the settings; invalid flags keep their old value.

        Returns the errors, also kept in :attr:`errors` until the next
        clean reload.
        """
        with self._lock:
            self._settings.reload()
            base = dict(self._base)
            errors: list[FlagValueError] = []
            for name in FLAG_NAMES:
                try:
                    base[name] = self._resolve(name)
                except FlagValueError as exc:
                    errors.append(exc)
            old = self._values
            self._base = base
            self._values = {**base, **self._overrides}
            self.errors = tuple(errors)
            new = self._values
        for error in errors:
            self._report_error(error, new[error.name])
        for name in FLAG_NAMES:
            if _changed(old[name], new[name]):
                self._publish_change(old[name], new[name])
        return tuple(errors)

    def set_override(
        self,
        name: str,
        enabled: bool,
        *,
        reason: str,
        actor: str | None = None,
    ) -> FlagValue:
        """Force flag *name* until restart (source ``api``); needs a reason."""
        self._check_name(name)
        if not isinstance(enabled, bool):
            raise ConfigError(
                f"enabled must be true or false, got {enabled!r}", where=name
            )
        reason = validate_reason(reason)
        value = FlagValue(name, enabled, FlagSource.API, reason=reason)
        with self._lock:
            old = self._values[name]
            self._overrides = {**self._overrides, name: value}
            self._values = {**self._values, name: value}
        self._publish_change(old, value, reason=reason, actor=actor)
        return value

    def clear_override(
        self,
        name: str,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> FlagValue:
        """Drop the API override of *name*; the next source takes over."""
        self._check_name(name)
        if reason is not None:
            reason = validate_reason(reason)
        with self._lock:
            old = self._values[name]
            if name not in self._overrides:
                return old
            self._overrides = {
                n: v for n, v in self._overrides.items() if n != name
            }
            value = self._base[name]
            self._values = {**self._values, name: value}
        self._publish_change(old, value, reason=reason, actor=actor)
        return value

    # -- internals ------------------------------------------------------------

    def _check_name(self, name: str) -> None:
        if name not in FLAG_NAMES:
            raise UnknownNameError("flag", name, list(FLAG_NAMES))

    def _resolve(self, name: str) -> FlagValue:
        setting = self._settings.get(name)
        if setting is not None:
            source = FlagSource(setting.source)
            file = setting.file
            enabled = parse_bool(
                setting.value,
                name=name,
                file=_ENVIRONMENT_FILE if file is None else file,
                line=setting.line,
            )
            return FlagValue(name, enabled, source, file, setting.line)
        if name in self._config:
            return FlagValue(name, self._config[name], FlagSource.CONFIG)
        return FlagValue(name, True, FlagSource.DEFAULT)

    def _report_error(self, error: FlagValueError, kept: FlagValue) -> None:
        _log.warning(
            "%s; keeping %s",
            error,
            "true" if kept.enabled else "false",
            extra={"facts": {"flag": error.name, "source": str(kept.source)}},
        )
        self._publish(
            EventKind.FLAG_ERROR,
            message=str(error),
            target=error.name,
            data={
                "value": error.value,
                "file": error.file,
                "line": error.line,
                "kept": kept.enabled,
                "keptSource": str(kept.source),
            },
        )

    def _publish_change(
        self,
        old: FlagValue,
        new: FlagValue,
        *,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        state = "enabled" if new.enabled else "disabled"
        origin = new.where or str(new.source)
        message = f"{new.name} {state} (source {origin})"
        facts: dict[str, object] = {"old": old.enabled, "new": new.enabled}
        if reason is not None:
            facts["reason"] = reason
        if actor is not None:
            facts["actor"] = actor
        _log.info(message, extra={"facts": facts})
        self._publish(
            EventKind.FLAG_CHANGED,
            message=message,
            target=new.name,
            reason=reason,
            actor=actor,
            data={
                "old": old.enabled,
                "new": new.enabled,
                "source": str(new.source),
                "oldSource": str(old.source),
                "file": new.file,
                "line": new.line,
            },
        )

    def _publish(
        self,
        kind: EventKind,
        *,
        message: str,
        target: str,
        data: Mapping[str, Any],
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        if self._bus is None:
            return
        self._bus.publish(
            Event(
                kind=kind,
                at=self._clock.time(),
                component=_COMPONENT,
                message=message,
                target=target,
                actor=actor,
                reason=reason,
                data=data,
            )
        )

    def __repr__(self) -> str:
        flags = ", ".join(
            f"{n}={'on' if v.enabled else 'off'}"
            for n, v in self.snapshot().items()
        )
        return f"FeatureFlags({flags})"


def _changed(old: FlagValue, new: FlagValue) -> bool:
    return old.enabled != new.enabled or old.source != new.source
