"""Request and response bodies of the HTTP API (camelCase on the wire)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    field_validator,
)

from selfhealing.exceptions import MAX_REASON_LENGTH, validate_reason


__all__ = [
    "BreakerResetBody",
    "BreakerResetResult",
    "FlagUpdateBody",
    "OptionalReasonBody",
    "ResumeBody",
    "ResumeResult",
    "TaskActionResult",
]

_REASON = (
    f"Why (1-{MAX_REASON_LENGTH} characters after trimming); recorded in "
    "the audit trail with who asked."
)


# The rule validate_reason() applies, as a pattern for the OpenAPI schema:
# 1-500 characters once surrounding whitespace is trimmed.
_WS = "[ \\t\\n\\r\\f\\v]"
_NON_WS = "[^ \\t\\n\\r\\f\\v]"
REASON_PATTERN = (
    f"^{_WS}*{_NON_WS}(?:[\\s\\S]{{0,{MAX_REASON_LENGTH - 2}}}{_NON_WS})?"
    f"{_WS}*$"
)
_REASON_SCHEMA: dict[str, JsonValue] = {
    "minLength": 1,
    "pattern": REASON_PATTERN,
}


def _reason(value: str) -> str:
    try:
        return validate_reason(value)
    except ValueError as exc:
        raise ValueError(getattr(exc, "detail", str(exc))) from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Reasoned(_Body):
    reason: str = Field(
        description=_REASON,
        examples=["Valid API keys added"],
        json_schema_extra=_REASON_SCHEMA,
    )

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        return _reason(value)


class ResumeBody(_Reasoned):
    """``POST /api/system/heal/resume``."""


class BreakerResetBody(_Reasoned):
    """``POST /api/circuit-breakers/{name}/reset``."""

    force: StrictBool = Field(
        default=False, description="Required to leave PERMANENT_OPEN."
    )


class FlagUpdateBody(_Reasoned):
    """``PUT /api/flags/{name}``: a runtime override, gone at restart."""

    enabled: StrictBool


class OptionalReasonBody(_Body):
    reason: str | None = Field(
        default=None, description=_REASON, json_schema_extra=_REASON_SCHEMA
    )

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        return None if value is None else _reason(value)


class ResumeResult(BaseModel):
    resumed: bool
    isDormant: bool  # noqa: N815 (the wire format is camelCase)
    message: str
    selfHealing: dict[str, Any]  # noqa: N815


class BreakerResetResult(BaseModel):
    name: str
    previousState: str  # noqa: N815
    state: str
    breaker: dict[str, Any]


class TaskActionResult(BaseModel):
    changed: int
    backgroundTasks: dict[str, Any]  # noqa: N815
