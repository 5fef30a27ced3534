"""The audit trail: where every governance decision (an Event) is kept.

The daemon subscribes a store to the EventBus (``bus.subscribe(
store.record)``), so ``record()`` runs on the event loop thread: it only
enqueues. ``query()`` reads back committed records for the API and the CLI,
newest last. Two stores keep the same contract:

- :class:`~selfhealing.store.sqlite.SQLiteAuditStore`: the daemon's default,
  a WAL database with a writer thread; survives a crash of the process.
- :class:`~selfhealing.store.memory.MemoryAuditStore`: a bounded deque, for
  library use and tests.

Both are imported on first use, so importing the records costs nothing.
"""

from __future__ import annotations

import json

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from selfhealing.clock import utc_iso
from selfhealing.events import Event
from selfhealing.exceptions import ConfigError


if TYPE_CHECKING:
    from selfhealing.store.memory import MemoryAuditStore
    from selfhealing.store.sqlite import SQLiteAuditStore

__all__ = [
    "MAX_QUERY_LIMIT",
    "AuditQuery",
    "AuditRecord",
    "AuditStore",
    "MemoryAuditStore",
    "SQLiteAuditStore",
    "StoreHealth",
    "decode_data",
    "encode_data",
]

MAX_QUERY_LIMIT = 1000

_LAZY = {
    "MemoryAuditStore": "selfhealing.store.memory",
    "SQLiteAuditStore": "selfhealing.store.sqlite",
}


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One event as the audit trail holds it. *at* is wall epoch seconds.

    *id* grows with every record a database (or memory store) accepts, so
    ``since_id`` pages forward without repeats.
    """

    id: int
    kind: str
    at: float
    component: str
    message: str
    target: str | None
    actor: str | None
    reason: str | None
    data: dict[str, Any]

    @classmethod
    def from_event(cls, record_id: int, event: Event) -> AuditRecord:
        """The record *event* becomes, its data in stored (JSON) form."""
        return cls(
            id=record_id,
            kind=str(event.kind),
            at=float(event.at),
            component=event.component,
            message=event.message,
            target=event.target,
            actor=event.actor,
            reason=event.reason,
            data=decode_data(encode_data(event.data)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The camelCase shape of ``GET /api/events``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "at": utc_iso(self.at),
            "atEpoch": self.at,
            "component": self.component,
            "message": self.message,
            "target": self.target,
            "actor": self.actor,
            "reason": self.reason,
            "data": dict(self.data),
        }


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the store is keeping up, for status, metrics and alerts.

    *pending* events are accepted but not yet durable; *written* counts the
    events this store committed; *dropped* the events it had to give up
    (queue full, or closed before they could be written).
    """

    ok: bool
    pending: int
    written: int
    dropped: int
    last_error: str | None = None
    last_error_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pending": self.pending,
            "written": self.written,
            "dropped": self.dropped,
            "lastError": self.last_error,
            "lastErrorAt": utc_iso(self.last_error_at),
            "lastErrorAtEpoch": self.last_error_at,
        }


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Validated filters of :meth:`AuditStore.query`.

    *since_id* is exclusive and *since_time* (epoch seconds) inclusive.
    *kind* matches exactly, or as a prefix when it ends with ``.`` or
    ``*``: ``"healing.*"`` and ``"healing."`` match every ``healing.``
    kind. With *since_id* the first *limit* records after it are returned
    (paging forward); without it the last *limit*. Either way ascending.
    """

    limit: int = 100
    since_id: int | None = None
    since_time: float | None = None
    kind: str | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if not _is_int(self.limit) or not 1 <= self.limit <= MAX_QUERY_LIMIT:
            raise ConfigError(
                f"must be an integer from 1 to {MAX_QUERY_LIMIT}, "
                f"got {self.limit!r}",
                where="limit",
            )
        if self.since_id is not None and not _is_int(self.since_id):
            raise ConfigError(
                f"must be an integer event id, got {self.since_id!r}",
                where="since_id",
            )
        if self.since_time is not None and not (
            _is_int(self.since_time) or isinstance(self.since_time, float)
        ):
            raise ConfigError(
                f"must be epoch seconds, got {self.since_time!r}",
                where="since_time",
            )
        for name in ("kind", "target"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(
                    f"must be a non-empty string, got {value!r}", where=name
                )

    @property
    def kind_prefix(self) -> str | None:
        """The prefix *kind* stands for, or None when it matches exactly."""
        if self.kind is None:
            return None
        if self.kind.endswith("*"):
            return self.kind[:-1]
        if self.kind.endswith("."):
            return self.kind
        return None

    def matches(self, record: AuditRecord) -> bool:
        """Whether *record* passes every filter (the limit aside)."""
        if self.since_id is not None and record.id <= self.since_id:
            return False
        if self.since_time is not None and record.at < self.since_time:
            return False
        if self.target is not None and record.target != self.target:
            return False
        if self.kind is None:
            return True
        prefix = self.kind_prefix
        if prefix is None:
            return record.kind == self.kind
        return record.kind.startswith(prefix)


@runtime_checkable
class AuditStore(Protocol):
    """Keeps Events and gives them back as AuditRecords."""

    def record(self, event: Event) -> None:
        """Accept *event*; never blocks and never raises for bad data."""

    def query(
        self,
        *,
        limit: int = 100,
        since_id: int | None = None,
        since_time: float | None = None,
        kind: str | None = None,
        target: str | None = None,
    ) -> list[AuditRecord]:
        """Committed records matching the filters, ascending by id.

        See :class:`AuditQuery` for the filters; raises ConfigError for a
        bad one.
        """

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything recorded before the call is durable.

        True if so within *timeout* seconds. Dropped events are counted in
        :attr:`health`, not waited for.
        """

    def close(self) -> None:
        """Write what can be written, then release every resource."""

    @property
    def health(self) -> StoreHealth:
        """A snapshot of the store's state."""


def encode_data(data: Mapping[str, Any]) -> str:
    """The JSON text an event's *data* is stored as.

    Values JSON cannot hold (paths, sets, objects) are stored as their
    ``str()``, so a publisher's odd value never loses the event.
    """
    plain = data if isinstance(data, dict) else dict(data)
    try:
        return orjson.dumps(
            plain, default=_fallback, option=orjson.OPT_NON_STR_KEYS
        ).decode()
    except (TypeError, ValueError):
        pass
    try:
        # orjson refuses what the stdlib accepts: integers beyond 64 bits,
        # very deep nesting. The stdlib is slower; this path is rare.
        return json.dumps(
            plain, default=_fallback, ensure_ascii=False, separators=(",", ":")
        )
    except (TypeError, ValueError, RecursionError):
        # A cycle or absurd depth: keep the event, say what the data was.
        return json.dumps({"unserializable": type(data).__name__})


def decode_data(text: str | bytes) -> dict[str, Any]:
    """The data dict back from its stored JSON text."""
    value = orjson.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _fallback(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    return str(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def __getattr__(name: str) -> Any:
    # The stores import this module, so they cannot be imported at its top.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(
            f"module 'selfhealing.store' has no attribute {name!r}"
        )
    from importlib import import_module  # noqa: PLC0415 (lazy re-export)

    return getattr(import_module(module), name)
