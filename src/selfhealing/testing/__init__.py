"""Test doubles shipped with selfhealing, for its own tests and yours."""

from __future__ import annotations

from selfhealing.testing._anthropic import (
    FakeAnthropic,
    RecordedRequest,
    Reply,
)
from selfhealing.testing._clock import FakeClock


__all__ = ["FakeAnthropic", "FakeClock", "RecordedRequest", "Reply"]
