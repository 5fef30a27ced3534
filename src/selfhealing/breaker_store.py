"""Where a circuit breaker's state lives between transitions.

A breaker keeps its working state in its own attributes, so the closed,
successful path never touches a store. It writes a BreakerRecord through on
every transition and counted failure, and reads one back when created.
Times are wall-clock epochs, so a record survives a restart of the process
(a monotonic clock starts over).
"""

from __future__ import annotations

import threading

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


__all__ = ["BreakerRecord", "BreakerStateStore", "MemoryBreakerStore"]


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """The persisted state of one breaker."""

    state: str
    failure_count: int
    trip_count: int
    trip_times: tuple[float, ...]
    opened_at: float | None
    permanent_open_reason: str | None


@runtime_checkable
class BreakerStateStore(Protocol):
    """Load and save breaker records by breaker name."""

    def load(self, name: str) -> BreakerRecord | None:
        """The last saved record, or None for a breaker never saved."""

    def save(self, name: str, record: BreakerRecord) -> None:
        """Replace the record of *name*."""


class MemoryBreakerStore:
    """Records in a dict: the default, for one process."""

    __slots__ = ("_lock", "_records")

    def __init__(self) -> None:
        self._records: dict[str, BreakerRecord] = {}
        self._lock = threading.Lock()

    def load(self, name: str) -> BreakerRecord | None:
        return self._records.get(name)

    def save(self, name: str, record: BreakerRecord) -> None:
        with self._lock:
            self._records[name] = record

    def __len__(self) -> int:
        return len(self._records)
