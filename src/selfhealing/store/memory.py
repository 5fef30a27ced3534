"""MemoryAuditStore: the audit trail in a bounded deque.

For library use (an embedded engine with no state directory) and for tests.
It keeps the SQLite store's contract, including data returned in its JSON
form, so code tested against it behaves the same against SQLite. Records
are "durable" the moment record() returns, and gone with the process.
"""

from __future__ import annotations

import logging
import threading

from collections import deque
from types import TracebackType
from typing import Self

from selfhealing.clock import Clock, system_clock
from selfhealing.events import Event
from selfhealing.exceptions import ConfigError
from selfhealing.store import AuditQuery, AuditRecord, StoreHealth


__all__ = ["MemoryAuditStore"]

_log = logging.getLogger("selfhealing.audit")


class MemoryAuditStore:
    """Keep the last *retention* events in memory.

    Thread-safe: record() may run on the event loop while the API queries
    from a worker thread.
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_dropped",
        "_lock",
        "_next_id",
        "_records",
        "_retention",
        "_written",
    )

    def __init__(
        self, *, retention: int = 10_000, clock: Clock = system_clock
    ) -> None:
        if (
            not isinstance(retention, int)
            or isinstance(retention, bool)
            or retention < 1
        ):
            raise ConfigError(
                f"must be a positive integer, got {retention!r}",
                where="retention",
            )
        self._retention = retention
        # Accepted so both stores are built alike; nothing here waits.
        self._clock = clock
        self._records: deque[AuditRecord] = deque(maxlen=retention)
        self._lock = threading.Lock()
        self._next_id = 1
        self._written = 0
        self._dropped = 0
        self._closed = False

    @property
    def retention(self) -> int:
        return self._retention

    def record(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                self._dropped += 1
                if self._dropped == 1:
                    _log.warning(
                        "audit event recorded after close() was dropped",
                        extra={"facts": {"kind": str(event.kind)}},
                    )
                return
            self._records.append(AuditRecord.from_event(self._next_id, event))
            self._next_id += 1
            self._written += 1

    def query(
        self,
        *,
        limit: int = 100,
        since_id: int | None = None,
        since_time: float | None = None,
        kind: str | None = None,
        target: str | None = None,
    ) -> list[AuditRecord]:
        spec = AuditQuery(
            limit=limit,
            since_id=since_id,
            since_time=since_time,
            kind=kind,
            target=target,
        )
        with self._lock:
            records = tuple(self._records)
        if spec.since_id is not None:
            found: list[AuditRecord] = []
            for record in records:
                if spec.matches(record):
                    found.append(record)
                    if len(found) == spec.limit:
                        break
            return found
        newest_first: list[AuditRecord] = []
        for record in reversed(records):
            if spec.matches(record):
                newest_first.append(record)
                if len(newest_first) == spec.limit:
                    break
        newest_first.reverse()
        return newest_first

    def flush(self, timeout: float = 5.0) -> bool:  # noqa: ARG002 (protocol)
        # Nothing is ever pending: record() stores before it returns.
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def count(self) -> int:
        """How many records the store holds now."""
        with self._lock:
            return len(self._records)

    @property
    def health(self) -> StoreHealth:
        with self._lock:
            return StoreHealth(
                ok=not self._closed,
                pending=0,
                written=self._written,
                dropped=self._dropped,
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return (
            f"MemoryAuditStore(retention={self._retention}, "
            f"records={len(self._records)})"
        )
