"""``selfheal.toml``: the daemon's configuration, validated with pydantic.

Every error names the file, the field path (``targets[2].check.url``) and
what was expected. Unknown keys are errors, and so are references to names
that do not exist (a target naming an unknown action, an action naming an
unknown process). The key names are a contract: scripts rely on them.
"""

from __future__ import annotations

import re
import signal
import tomllib

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from selfhealing.durations import parse_duration
from selfhealing.exceptions import ConfigError


__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ActionConfig",
    "BreakerConfig",
    "CheckConfig",
    "CommandActionConfig",
    "CommandCheckConfig",
    "Config",
    "DiskCheckConfig",
    "EngineConfig",
    "HttpActionConfig",
    "HttpCheckConfig",
    "LlmActionConfig",
    "LlmConfig",
    "LlmKeyConfig",
    "LoggingConfig",
    "MemoryCheckConfig",
    "NotificationsConfig",
    "PreventiveConfig",
    "ProcessCheckConfig",
    "ProcessConfig",
    "ResourcesConfig",
    "RestartProcessActionConfig",
    "ServerConfig",
    "StateConfig",
    "TargetConfig",
    "TcpCheckConfig",
    "load_config",
    "parse_config",
]

DEFAULT_CONFIG_FILE = "selfheal.toml"

Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[
    float, BeforeValidator(parse_duration), Field(gt=0)
]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            "expected 1-64 letters, digits, '_', '.', ':' or '-', "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]


def _check_process_name(value: str) -> str:
    if ":" in value:  # the supervisor's rule: no ':' (process:<name>)
        raise ValueError(
            "expected 1-64 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit, got {value!r}"
        )
    if value == "selfhealing":
        raise ValueError(
            "'selfhealing' is reserved: logs/selfhealing.log is the "
            "daemon's own log"
        )
    return value


ProcessName = Annotated[Name, AfterValidator(_check_process_name)]


def _check_argv(value: list[str]) -> list[str]:
    if not value or not value[0].strip():
        raise ValueError(
            "expected a non-empty list of strings (argv, no shell), "
            'e.g. ["python3", "-m", "http.server", "8080"]'
        )
    return value


Argv = Annotated[list[str], AfterValidator(_check_argv)]


def _check_signal(value: str) -> str:
    name = value.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name not in signal.Signals.__members__:
        raise ValueError(
            f"expected a signal name such as SIGTERM, got {value!r}"
        )
    return name


SignalName = Annotated[str, AfterValidator(_check_signal)]


def _check_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s:]+", value):
        raise ValueError(
            f"expected an http:// or https:// URL with a host, got {value!r}"
        )
    return value


Url = Annotated[str, AfterValidator(_check_url)]
StatusCodes = Annotated[
    list[Annotated[int, Field(ge=100, le=599)]], Field(min_length=1)
]
ExitCode = Annotated[int, Field(ge=0, le=255)]
# The checks refuse empty strings here: so must validation.
NonEmpty = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(3001, ge=1, le=65535)
    access_log: bool = False


class EngineConfig(_Section):
    max_consecutive_failures: int = Field(10, ge=1)
    backoff_base: PositiveDuration = 5.0
    backoff_max: PositiveDuration = 1800.0

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> EngineConfig:
        if self.backoff_max < self.backoff_base:
            raise ValueError(
                f"backoff_max ({self.backoff_max}s) is below backoff_base "
                f"({self.backoff_base}s)"
            )
        return self


class BreakerConfig(_Section):
    failure_threshold: int = Field(5, ge=1)
    recovery_timeout: Duration = 60.0
    half_open_max_calls: int = Field(1, ge=1)
    permanent_after_trips: int = Field(3, ge=0)
    permanent_window: PositiveDuration = 1800.0


class StateConfig(_Section):
    dir: str | None = None  # SELFHEAL_STATE_DIR, else .selfhealing
    retention: int = Field(100_000, ge=100)


class LoggingConfig(_Section):
    dir: str = "logs"
    debug: str | None = None  # like DEBUG=self-healing:*


class ProcessConfig(_Section):
    name: ProcessName
    command: Argv
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    stop_signal: SignalName = "SIGTERM"
    stop_timeout: Duration = 10.0
    autostart: bool = True


class _CheckBase(_Section):
    interval: PositiveDuration = 10.0
    timeout: PositiveDuration = 1.0
    initial_delay: Duration = 0.0
    failure_threshold: int = Field(3, ge=1)
    success_threshold: int = Field(1, ge=1)


class HttpCheckConfig(_CheckBase):
    type: Literal["http"]
    url: Url
    method: Literal[
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"
    ] = "GET"
    expected_status: StatusCodes | None = None  # None: 200-399
    body_contains: NonEmpty | None = None
    body_regex: NonEmpty | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True  # false for self-signed internal services

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            # Too large a repeat or too deep a nesting is no re.error.
            except (re.error, OverflowError, RecursionError) as exc:
                raise ValueError(
                    f"not a valid regular expression: {exc}"
                ) from None
        return value


class TcpCheckConfig(_CheckBase):
    type: Literal["tcp"]
    host: NonEmpty = "127.0.0.1"
    port: int = Field(ge=1, le=65535)


class ProcessCheckConfig(_CheckBase):
    type: Literal["process"]
    process: str | None = None  # a managed process by name
    pid_file: str | None = None
    match: NonEmpty | None = None  # a substring of the command line

    @model_validator(mode="after")
    def _exactly_one(self) -> ProcessCheckConfig:
        given = [
            key
            for key in ("process", "pid_file", "match")
            if getattr(self, key) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "expected exactly one of process, pid_file or match, got "
                + (", ".join(given) or "none")
            )
        return self


class CommandCheckConfig(_CheckBase):
    type: Literal["command"]
    command: Argv
    expected_exit_code: ExitCode = 0
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class DiskCheckConfig(_CheckBase):
    type: Literal["disk"]
    path: str = "/"
    max_used_percent: float = Field(ge=0, le=100)
    max_inodes_percent: float | None = Field(None, ge=0, le=100)


class MemoryCheckConfig(_CheckBase):
    type: Literal["memory"]
    max_used_percent: float = Field(ge=0, le=100)


CheckConfig = Annotated[
    HttpCheckConfig
    | TcpCheckConfig
    | ProcessCheckConfig
    | CommandCheckConfig
    | DiskCheckConfig
    | MemoryCheckConfig,
    Field(discriminator="type"),
]


class TargetConfig(_Section):
    name: Name
    check: CheckConfig
    actions: list[str] = Field(default_factory=list)  # the escalation ladder
    verify_timeout: PositiveDuration | None = None
    verify_settle: Duration = 1.0  # healthy this long after an action
    relapse_window: Duration | None = None  # default: 10 x interval
    breaker: BreakerConfig | None = None  # settings of target:<name>

    @property
    def effective_verify_timeout(self) -> float:
        """SPEC default: interval x (failure_threshold + 2)."""
        if self.verify_timeout is not None:
            return self.verify_timeout
        return self.check.interval * (self.check.failure_threshold + 2)


class _ActionBase(_Section):
    name: Name
    timeout: PositiveDuration = 30.0


class RestartProcessActionConfig(_ActionBase):
    type: Literal["restart_process"]
    process: str


class CommandActionConfig(_ActionBase):
    type: Literal["command"]
    command: Argv
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    expected_exit_code: ExitCode = 0


class HttpActionConfig(_ActionBase):
    type: Literal["http"]
    url: Url
    method: Literal["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expected_status: StatusCodes | None = None  # None: 200-299


class LlmActionConfig(_ActionBase):
    type: Literal["llm"]
    allowed: list[str] = Field(min_length=1)  # names of other actions
    timeout: PositiveDuration = 60.0


ActionConfig = Annotated[
    RestartProcessActionConfig
    | CommandActionConfig
    | HttpActionConfig
    | LlmActionConfig,
    Field(discriminator="type"),
]


class LlmKeyConfig(_Section):
    env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    group: str | None = None


class LlmConfig(_Section):
    model: str = "claude-sonnet-4-6"
    base_url: str | None = None  # else ANTHROPIC_BASE_URL
    timeout: PositiveDuration = 20.0  # one request
    deadline: PositiveDuration = 45.0  # one advice, both attempts
    max_tokens: int = Field(512, ge=64, le=1024)
    min_confidence: float = Field(0.7, ge=0, le=1)
    keys: list[LlmKeyConfig] = Field(default_factory=list)


def _check_notify_url(value: str) -> str:
    # apprise loads only when some URL is configured.
    from selfhealing.notify import check_url  # noqa: PLC0415

    return check_url(value)


class NotificationsConfig(_Section):
    """``[notifications]``: apprise URLs told about critical transitions."""

    # URLs hold tokens: a validation error must not echo them.
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True
    )

    urls: list[Annotated[str, AfterValidator(_check_notify_url)]] = Field(
        default_factory=list
    )
    targets: bool = True  # also a target going unhealthy and recovering
    min_interval: Duration = 60.0  # per kind and subject
    max_per_hour: int = Field(30, ge=1)
    retry_max: PositiveDuration = 300.0


class ResourcesConfig(_Section):
    interval: PositiveDuration = 5.0  # one sampling pass
    ring: int = Field(720, ge=10, le=100_000)  # samples kept per series
    disk_paths: list[str] = Field(default_factory=list)


class PreventiveConfig(_Section):
    name: Name
    condition: str  # "rss will reach 1GB within 30m", "disk /var used% ..."
    action: str
    process: str | None = None  # whose rss/cpu/fds/threads/children
    cooldown: PositiveDuration = 600.0
    window: PositiveDuration | None = None  # forecast fit window
    verify_timeout: PositiveDuration = 30.0

    @model_validator(mode="after")
    def _parses(self) -> PreventiveConfig:
        from selfhealing.forecast import parse_condition  # noqa: PLC0415

        try:
            parse_condition(self.condition)
        except ValueError as exc:
            raise ValueError(
                f"condition: {getattr(exc, 'detail', exc)}"
            ) from None
        return self


class Config(_Section):
    """The whole file. Every section is optional."""

    # Values may be secrets (URLs, headers): errors show paths, not input.
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True
    )

    server: ServerConfig = ServerConfig()
    engine: EngineConfig = EngineConfig()
    breakers: dict[str, BreakerConfig] = Field(default_factory=dict)
    flags: dict[str, StrictBool] = Field(default_factory=dict)
    state: StateConfig = StateConfig()
    logging: LoggingConfig = LoggingConfig()
    processes: list[ProcessConfig] = Field(default_factory=list)
    targets: list[TargetConfig] = Field(default_factory=list)
    actions: list[ActionConfig] = Field(default_factory=list)
    llm: LlmConfig = LlmConfig()
    resources: ResourcesConfig = ResourcesConfig()
    preventive: list[PreventiveConfig] = Field(default_factory=list)
    notifications: NotificationsConfig = NotificationsConfig()

    @property
    def advisor_configured(self) -> bool:
        """Some ladder may ask the LLM advisor."""
        return any(isinstance(a, LlmActionConfig) for a in self.actions)

    @field_validator("flags")
    @classmethod
    def _known_flags(cls, value: dict[str, bool]) -> dict[str, bool]:
        from selfhealing.flags import FLAG_NAMES  # noqa: PLC0415 (cycle-free)

        unknown = sorted(set(value) - set(FLAG_NAMES))
        if unknown:
            raise ValueError(
                f"unknown flag {unknown[0]!r}; expected one of "
                + ", ".join(FLAG_NAMES)
            )
        return value

    @model_validator(mode="after")
    def _references(self) -> Config:
        errors: list[str] = []
        for section in ("processes", "targets", "actions", "preventive"):
            _unique(getattr(self, section), section, errors)
        errors += _action_references(self)
        errors += _target_references(self)
        errors += _preventive_references(self)
        if errors:
            raise _ReferenceError(errors)
        return self

    def breaker_settings(self, name: str) -> dict[str, Any]:
        """Keyword settings for ``CircuitBreakerRegistry.configure``."""
        return self.breakers[name].model_dump()


def _action_references(config: Config) -> list[str]:
    errors: list[str] = []
    processes = {p.name for p in config.processes}
    actions = {a.name for a in config.actions}
    llm_actions = {
        a.name for a in config.actions if isinstance(a, LlmActionConfig)
    }
    for i, action in enumerate(config.actions):
        if (
            isinstance(action, RestartProcessActionConfig)
            and action.process not in processes
        ):
            errors.append(
                f"actions[{i}].process: unknown process "
                f"{action.process!r} (known: {_listing(processes)})"
            )
        if isinstance(action, LlmActionConfig):
            errors.extend(
                f"actions[{i}].allowed[{j}]: {name!r} is not a non-llm "
                f"action (known: {_listing(actions - llm_actions)})"
                for j, name in enumerate(action.allowed)
                if name not in actions or name in llm_actions
            )
    return errors


def _target_references(config: Config) -> list[str]:
    errors: list[str] = []
    processes = {p.name for p in config.processes}
    actions = {a.name for a in config.actions}
    for i, target in enumerate(config.targets):
        errors.extend(
            f"targets[{i}].actions[{j}]: unknown action {name!r} "
            f"(known: {_listing(actions)})"
            for j, name in enumerate(target.actions)
            if name not in actions
        )
        check = target.check
        if (
            isinstance(check, ProcessCheckConfig)
            and check.process is not None
            and check.process not in processes
        ):
            errors.append(
                f"targets[{i}].check.process: unknown process "
                f"{check.process!r} (known: {_listing(processes)})"
            )
    return errors


def _preventive_references(config: Config) -> list[str]:
    errors: list[str] = []
    processes = {p.name for p in config.processes}
    actions = {
        a.name for a in config.actions if not isinstance(a, LlmActionConfig)
    }
    for i, rule in enumerate(config.preventive):
        if rule.action not in actions:
            errors.append(
                f"preventive[{i}].action: unknown action {rule.action!r} "
                f"(known: {_listing(actions)})"
            )
        if rule.process is not None and rule.process not in processes:
            errors.append(
                f"preventive[{i}].process: unknown process {rule.process!r} "
                f"(known: {_listing(processes)})"
            )
    return errors


class _ReferenceError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def _unique(items: Sequence[Any], section: str, errors: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.name in seen:
            errors.append(
                f"{section}[{i}].name: duplicate name {item.name!r} "
                f"(also {section}[{seen[item.name]}])"
            )
        seen.setdefault(item.name, i)


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names)) if names else "none"


def _path(loc: tuple[int | str, ...]) -> str:
    """``('targets', 2, 'check', 'http', 'url')`` -> ``targets[2].check.url``.

    pydantic puts the member's tag of a discriminated union into the
    location (the ``'http'`` above); it is not a key, so it is left out.
    """
    text = ""
    for k, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        if _is_union_tag(loc, k):
            continue
        key = _key(str(part))
        text += f".{key}" if text else key
    return text or "(top level)"


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BMP_LAST = 0xFFFF  # beyond it TOML writes \UXXXXXXXX


def _key(part: str) -> str:
    """*part* as TOML writes a key: bare when it can be, else quoted, with
    the characters a message cannot show (a newline, ESC) escaped."""
    if _BARE_KEY.fullmatch(part):
        return part
    return '"' + "".join(map(_escape, part)) + '"'


def _escape(char: str) -> str:
    if char in '"\\':
        return "\\" + char
    if char.isprintable():
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= _BMP_LAST else f"\\U{code:08x}"


def _is_union_tag(loc: tuple[int | str, ...], k: int) -> bool:
    before = loc[:k]
    if before[-1:] == ("check",):
        return True
    return before[-2:-1] == ("actions",) and isinstance(before[-1], int)


def _messages(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False):
        ctx = item.get("ctx") or {}
        inner = ctx.get("error")
        if isinstance(inner, _ReferenceError):
            lines.extend(inner.errors)
            continue
        loc = tuple(item["loc"])
        # A discriminated union with a wrong tag reports the tag field.
        if item["type"] == "union_tag_invalid":
            tags = ctx.get("expected_tags", "")
            found = ctx.get("tag", "")
            lines.append(
                f"{_path(loc)}.type: unknown type {found!r}, expected one "
                f"of {tags}"
            )
            continue
        if item["type"] == "union_tag_not_found":
            lines.append(f"{_path(loc)}.type: missing (the kind of entry)")
            continue
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/config.md)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        lines.append(f"{_path(loc)}: {message}")
    return lines


def parse_config(data: dict[str, Any], *, source: str = "<config>") -> Config:
    """Validate a parsed TOML document; ConfigError lists every problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        lines = _messages(error)
        raise ConfigError(
            f"{len(lines)} error(s):\n  " + "\n  ".join(lines), where=source
        ) from None


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a config file.

    With no *path*, read ``selfheal.toml`` from the working directory when
    it exists, else use the defaults.
    """
    if path is None:
        default = Path(DEFAULT_CONFIG_FILE)
        if not default.exists():
            return Config()
        path = default
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", where=str(path)) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read: {exc.strerror}", where=str(path)
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", where=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", where=str(path)) from None
    except RecursionError:  # tomllib recurses once per nested array/table
        raise ConfigError(
            "invalid TOML: nested too deeply", where=str(path)
        ) from None
    return parse_config(data, source=str(path))
