"""Durations as operators write them: ``30``, ``2.5``, ``"50ms"``, ``"5s"``,
``"2m"``, ``"1h"`` (and combinations such as ``"1m30s"``)."""

from __future__ import annotations

import math
import re

from datetime import timedelta


__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Seconds from a number, a timedelta or a string like ``"1m30s"``.

    Raises ValueError with the accepted forms; pydantic turns it into a
    field error that names the path.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")  # noqa: TRY004 (pydantic wants ValueError)
    if isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            result = float(value)
        except OverflowError:  # an int beyond any float (TOML allows it)
            result = math.inf
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if _WHOLE.fullmatch(text):
            result = sum(
                float(number) * _UNITS[unit]
                for number, unit in _PART.findall(text)
            )
        else:
            try:
                result = float(text)
            except ValueError:
                raise ValueError(
                    f'expected a duration such as 30, "50ms", "5s", '
                    f'"2m" or "1h", got {value!r}'
                ) from None
    else:
        raise ValueError(f"expected a duration, got {value!r}")  # noqa: TRY004 (pydantic wants ValueError)
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"a duration must be >= 0 and finite, got {value!r}")
    return result
