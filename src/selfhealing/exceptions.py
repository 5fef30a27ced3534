"""Every error ``selfhealing`` raises on purpose, in one tree.

::

    SelfHealingError(Exception)
    ├── ConfigError(ValueError)              bad settings, arguments or files
    │   ├── FlagValueError                   FILE:LINE: NAME=VALUE is not a boolean
    │   └── InvalidReasonError               empty, blank or over-long reason
    ├── CircuitOpenError                     a breaker rejected the call
    ├── BreakerResetRefusedError             reset() of a PERMANENT_OPEN breaker
    ├── UnknownNameError(KeyError)           no breaker / task / flag by that name
    ├── ActionError                          a remediation action failed
    ├── StoreError                           the audit store cannot record
    └── NoKeyAvailableError                  no LLM API key can serve now

Each error carries the facts as attributes and builds its message itself,
so callers never format messages and handlers never parse them.
"""

from __future__ import annotations


__all__ = [
    "ActionError",
    "BreakerResetRefusedError",
    "CircuitOpenError",
    "ConfigError",
    "FlagValueError",
    "InvalidReasonError",
    "NoKeyAvailableError",
    "SelfHealingError",
    "StoreError",
    "UnknownNameError",
]

MAX_REASON_LENGTH = 500
# Trimmed from reasons: ASCII whitespace, spelled out so the API's schema
# pattern can state the same rule in any regex dialect.
REASON_WHITESPACE = " \t\n\r\f\v"


class SelfHealingError(Exception):
    """Base class of every error raised by selfhealing."""


class ConfigError(SelfHealingError, ValueError):
    """A setting, an argument or a file holds a value that cannot be used.

    *where* names the place (a file and line, a field path, a parameter).
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        self.detail = message
        super().__init__(f"{where}: {message}" if where else message)


class FlagValueError(ConfigError):
    """A feature flag (or any boolean setting) is not a boolean."""

    def __init__(
        self, name: str, value: str, *, file: str | None, line: int | None
    ) -> None:
        self.name = name
        self.value = value
        self.file = file
        self.line = line
        where = None
        if file is not None:
            where = f"{file}:{line}" if line is not None else file
        super().__init__(
            f"{name}={value} is not a boolean "
            "(use true/false, 1/0, yes/no, on/off)",
            where=where,
        )


class InvalidReasonError(ConfigError):
    """An operator reason is empty, blank, or longer than 500 characters."""

    def __init__(self, reason: object) -> None:
        self.reason = reason
        if not isinstance(reason, str):
            message = f"reason must be a string, got {type(reason).__name__}"
        elif not reason.strip(REASON_WHITESPACE):
            message = (
                "a reason is required: say why (got an empty or blank reason)"
            )
        else:
            message = (
                f"reason is {len(reason.strip(REASON_WHITESPACE))} characters "
                "long; "
                f"the limit is {MAX_REASON_LENGTH}"
            )
        super().__init__(message, where="reason")


def validate_reason(reason: object) -> str:
    """Return *reason* trimmed, or raise InvalidReasonError."""
    if not isinstance(reason, str):
        raise InvalidReasonError(reason)
    trimmed = reason.strip(REASON_WHITESPACE)
    if not trimmed or len(trimmed) > MAX_REASON_LENGTH:
        raise InvalidReasonError(reason)
    return trimmed


class CircuitOpenError(SelfHealingError):
    """A circuit breaker refused the call without running it.

    ``CircuitOpenError(breaker, state, retry_after)``: *retry_after* is the
    number of seconds until the breaker may admit a trial call again, or
    None when only an operator can close it. Rejection is a hot path, so
    the facts live in ``args`` and the message is built only when read.
    """

    @property
    def breaker(self) -> str:
        return str(self.args[0])

    @property
    def state(self) -> str:
        return str(self.args[1])

    @property
    def retry_after(self) -> float | None:
        value = self.args[2]
        return None if value is None else float(value)

    def __str__(self) -> str:
        retry_after = self.retry_after
        if retry_after is None:
            hint = "it stays open until reset(force=True)"
        else:
            hint = f"retry in {retry_after:.3f}s"
        return f"circuit breaker {self.breaker!r} is {self.state}: {hint}"


class BreakerResetRefusedError(SelfHealingError):
    """reset() without force on a breaker in PERMANENT_OPEN."""

    def __init__(self, breaker: str, reason: str | None) -> None:
        self.breaker = breaker
        self.reason = reason
        super().__init__(
            f"circuit breaker {breaker!r} is PERMANENT_OPEN"
            f" ({reason or 'no reason recorded'}); fix the root cause, "
            "then call reset(force=True)"
        )


class UnknownNameError(SelfHealingError, KeyError):
    """No breaker, task, flag or key is known by that name."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        listing = ", ".join(sorted(known)) if known else "none"
        self.message = f"unknown {kind} {name!r} (known: {listing})"
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError would repr() the message; operators read it verbatim.
        return self.message


class ActionError(SelfHealingError):
    """A remediation action failed; raised from the original error."""

    def __init__(self, action: str, message: str) -> None:
        self.action = action
        super().__init__(f"action {action!r} failed: {message}")


class StoreError(SelfHealingError):
    """The audit store could not record or read."""


class NoKeyAvailableError(SelfHealingError):
    """No LLM API key can serve a request now.

    *retry_after* is the number of seconds until a rate-limited key cools
    down, or None when every key has failed and needs an operator.
    """

    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after
        if retry_after is None:
            message = "no usable API key: every key failed or none is set"
        else:
            message = (
                f"every API key is rate limited; next in {retry_after:.1f}s"
            )
        super().__init__(message)
