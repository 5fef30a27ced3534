"""Tagged log lines, secret masking and ``DEBUG=self-healing:*`` namespaces.

Operators grep ``logs/*.log`` for ``SelfHealing``, ``CircuitBreaker`` and
``BackgroundTaskManager`` (the guide's own commands), so every line carries
its component tag, derived from the logger name through
:data:`COMPONENT_TAGS`::

    2026-11-29T20:19:06.123Z INFO  [SelfHealing] dormant mode entered reason="..."

Facts passed as ``extra={"facts": {...}}`` are appended as ``key=value``.
Anything that looks like an Anthropic API key is masked on every handler
this module installs, so a key never reaches a log file.

``DEBUG`` works like the npm ``debug`` module the guide relies on: comma- or
space-separated patterns, ``*`` wildcards, ``-`` exclusions (which win).
Logger ``selfhealing.engine`` is namespace ``self-healing:engine``.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import re
import sys
import threading

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from selfhealing.clock import utc_iso
from selfhealing.exceptions import ConfigError


__all__ = [
    "COMPONENT_TAGS",
    "LOG_FILE_NAME",
    "NAMESPACE_PREFIX",
    "DebugNamespaces",
    "LoggingSetup",
    "SecretMaskingFilter",
    "TaggedFormatter",
    "configure_logging",
    "mask_secrets",
    "namespace_for",
    "parse_debug",
    "render_facts",
    "tag_for",
]

ROOT_LOGGER = "selfhealing"
NAMESPACE_PREFIX = "self-healing:"
LOG_FILE_NAME = "selfhealing.log"

#: Logger name -> component tag. Child loggers inherit their parent's tag.
#: Extend it (``COMPONENT_TAGS["selfhealing.x"] = "X"``) for new parts.
COMPONENT_TAGS: dict[str, str] = {
    "selfhealing.actions": "Remediation",
    "selfhealing.api": "API",
    "selfhealing.audit": "Audit",
    "selfhealing.breaker": "CircuitBreaker",
    "selfhealing.checks": "HealthCheck",
    "selfhealing.daemon": "Daemon",
    "selfhealing.engine": "SelfHealing",
    "selfhealing.events": "Events",
    "selfhealing.flags": "FeatureFlags",
    "selfhealing.keypool": "KeyPool",
    "selfhealing.llm": "LLMAdvisor",
    "selfhealing.metrics": "Metrics",
    "selfhealing.notify": "Notifier",
    "selfhealing.preventive": "PreventiveHealing",
    "selfhealing.resources": "ResourceMonitor",
    "selfhealing.status": "Status",
    "selfhealing.supervisor": "ProcessSupervisor",
    "selfhealing.tasks": "BackgroundTaskManager",
}

_SECRET = re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}")
_NEEDS_QUOTES = re.compile(r'[\s"=\\]')
_SPEC_SEPARATOR = re.compile(r"[\s,]+")


def mask_secrets(text: str) -> str:
    """Replace each Anthropic API key in *text* by ``sk-ant-...`` + last 4."""
    if "sk-ant-" not in text:
        return text
    return _SECRET.sub(lambda m: f"sk-ant-...{m.group(0)[-4:]}", text)


def tag_for(logger_name: str) -> str:
    """The component tag for a logger name.

    The nearest mapped ancestor in :data:`COMPONENT_TAGS` wins; other
    ``selfhealing.*`` loggers get their last name part; any other logger
    (``uvicorn.error``) is tagged with its own name.
    """
    name = logger_name
    while True:
        tag = COMPONENT_TAGS.get(name)
        if tag is not None:
            return tag
        name, dot, _ = name.rpartition(".")
        if not dot:
            break
    if logger_name.startswith(f"{ROOT_LOGGER}."):
        return logger_name.rpartition(".")[2]
    return logger_name


def namespace_for(logger_name: str) -> str:
    """The DEBUG namespace of a logger: ``selfhealing.x`` -> ``self-healing:x``."""
    if logger_name.startswith(f"{ROOT_LOGGER}."):
        return NAMESPACE_PREFIX + logger_name[len(ROOT_LOGGER) + 1 :]
    return logger_name


def _quote(text: str) -> str:
    if text and not _NEEDS_QUOTES.search(text):
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _fact_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_facts(facts: object) -> str:
    """`` key=value`` pairs for a facts mapping; values with spaces quoted."""
    if facts is None:
        return ""
    if not isinstance(facts, Mapping):
        return f" facts={_quote(_fact_text(facts))}"
    return "".join(
        f" {key}={_quote(_fact_text(value))}" for key, value in facts.items()
    )


class SecretMaskingFilter(logging.Filter):
    """Mask API keys in a record's message, args and facts (never drops)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: S110 - a bad format is the handler's to report
            pass
        else:
            # Render once and drop args: masking the rendered text also
            # catches keys inside the repr() of non-string arguments.
            record.msg = mask_secrets(message)
            record.args = None
        facts = getattr(record, "facts", None)
        if isinstance(facts, Mapping):
            record.facts = {
                key: _mask_value(value) for key, value in facts.items()
            }
        elif facts is not None:
            record.facts = mask_secrets(str(facts))
        return True


def _mask_value(value: object) -> object:
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    masked = mask_secrets(text)
    return value if masked == text else masked


class TaggedFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> [<Tag>] <message> key=value...``, masked."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{utc_iso(record.created)} {record.levelname:<5} "
            f"[{tag_for(record.name)}] {record.getMessage()}"
            f"{render_facts(getattr(record, 'facts', None))}"
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return mask_secrets(line)


@dataclass(frozen=True, slots=True)
class DebugNamespaces:
    """Which DEBUG namespaces are on: glob patterns, exclusions win."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    _include: tuple[re.Pattern[str], ...] = field(
        init=False, repr=False, compare=False
    )
    _exclude: tuple[re.Pattern[str], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_include", _patterns(self.include))
        object.__setattr__(self, "_exclude", _patterns(self.exclude))

    def enabled(self, namespace: str) -> bool:
        """True when *namespace* matches an inclusion and no exclusion."""
        if any(p.fullmatch(namespace) for p in self._exclude):
            return False
        return any(p.fullmatch(namespace) for p in self._include)

    def __bool__(self) -> bool:
        return bool(self.include)


def _patterns(globs: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(
        re.compile(".*".join(re.escape(part) for part in glob.split("*")))
        for glob in globs
    )


def parse_debug(spec: str | None) -> DebugNamespaces:
    """Parse a DEBUG spec: comma/space separated, ``*`` wildcard, ``-`` excludes."""
    include: list[str] = []
    exclude: list[str] = []
    for token in _SPEC_SEPARATOR.split(spec or ""):
        if token.startswith("-"):
            if token[1:]:
                exclude.append(token[1:])
        elif token:
            include.append(token)
    return DebugNamespaces(include=tuple(include), exclude=tuple(exclude))


@dataclass(slots=True)
class LoggingSetup:
    """What :func:`configure_logging` installed; :meth:`close` undoes it."""

    log_file: Path | None
    debug: DebugNamespaces
    handlers: tuple[logging.Handler, ...]
    loggers: tuple[str, ...]
    debug_loggers: tuple[str, ...]
    _saved: dict[str, tuple[int, bool]] = field(default_factory=dict)
    closed: bool = False

    def close(self) -> None:
        """Remove and close the handlers (flushing them); restore levels."""
        global _current  # noqa: PLW0603 - one setup per process, by design
        with _lock:
            if self.closed:
                return
            self.closed = True
            for name in self.loggers:
                logger = logging.getLogger(name)
                for handler in self.handlers:
                    logger.removeHandler(handler)
            for name, (level, propagate) in self._saved.items():
                logger = logging.getLogger(name)
                logger.setLevel(level)
                logger.propagate = propagate
            for handler in self.handlers:
                with contextlib.suppress(OSError, ValueError):
                    handler.flush()  # the stream may already be closed
                handler.close()
            if _current is self:
                _current = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_lock = threading.RLock()
_current: LoggingSetup | None = None


def _make_handlers(
    log_file: Path | None, *, console: bool, max_bytes: int, backup_count: int
) -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    if log_file is not None:
        handlers.append(
            logging.handlers.RotatingFileHandler(
                log_file,
                maxBytes=max_bytes,
                backupCount=backup_count,
                encoding="utf-8",
            )
        )
    if console:
        handlers.append(logging.StreamHandler(sys.stderr))
    formatter = TaggedFormatter()
    masking = SecretMaskingFilter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(masking)
    return handlers


def configure_logging(
    *,
    log_dir: Path | str | None = "logs",
    debug: str | None = None,
    console: bool = True,
    level: int = logging.INFO,
    max_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 5,
    extra_loggers: Sequence[str] = (),
) -> LoggingSetup:
    """Send ``selfhealing`` logs to ``<log_dir>/selfhealing.log`` and stderr.

    *log_dir* is created if needed (None: no file; relative paths are
    relative to the working directory). *debug* is a ``DEBUG`` spec (the
    caller reads the environment): each logger of :data:`COMPONENT_TAGS`
    whose namespace it enables is set to DEBUG, every other one to *level*.
    *extra_loggers* (say ``uvicorn.error``) get the same handlers.

    Calling it again replaces what the previous call installed; the
    returned :class:`LoggingSetup` removes it again with ``close()``.
    """
    if max_bytes < 0 or backup_count < 0:
        raise ConfigError(
            "max_bytes and backup_count must not be negative",
            where="logging",
        )
    namespaces = parse_debug(debug)
    with _lock:
        if _current is not None:
            _current.close()
        log_file = None
        if log_dir is not None:
            directory = Path(log_dir)
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the log directory: {exc.strerror or exc}",
                    where=str(directory),
                ) from exc
            log_file = directory / LOG_FILE_NAME
        try:
            handlers = _make_handlers(
                log_file,
                console=console,
                max_bytes=max_bytes,
                backup_count=backup_count,
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot open the log file: {exc.strerror or exc}",
                where=str(log_file),
            ) from exc
        return _install(
            handlers,
            log_file=log_file,
            namespaces=namespaces,
            level=level,
            extra_loggers=extra_loggers,
        )


def _install(
    handlers: list[logging.Handler],
    *,
    log_file: Path | None,
    namespaces: DebugNamespaces,
    level: int,
    extra_loggers: Sequence[str],
) -> LoggingSetup:
    global _current  # noqa: PLW0603 - one setup per process, by design
    loggers = (ROOT_LOGGER, *dict.fromkeys(n for n in extra_loggers if n))
    components = sorted(n for n in COMPONENT_TAGS if n.startswith(ROOT_LOGGER))
    saved: dict[str, tuple[int, bool]] = {}
    for name in (*loggers, *components):
        logger = logging.getLogger(name)
        saved.setdefault(name, (logger.level, logger.propagate))
    for name in loggers:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.propagate = False
        for handler in handlers:
            logger.addHandler(handler)
    debug_loggers: list[str] = []
    for name in components:
        on = namespaces.enabled(namespace_for(name))
        logging.getLogger(name).setLevel(logging.DEBUG if on else level)
        if on:
            debug_loggers.append(name)
    setup = LoggingSetup(
        log_file=log_file,
        debug=namespaces,
        handlers=tuple(handlers),
        loggers=loggers,
        debug_loggers=tuple(debug_loggers),
        _saved=saved,
    )
    _current = setup
    return setup
