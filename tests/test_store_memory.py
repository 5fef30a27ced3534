"""MemoryAuditStore and the shared records.

The query contract both stores keep is tested once, parametrized over both
stores, in test_store_sqlite.py (TestQueryContract).
"""

from __future__ import annotations

import logging
import threading

from types import MappingProxyType
from typing import Any

import pytest

import selfhealing.store

from selfhealing.events import Event, EventKind
from selfhealing.exceptions import ConfigError
from selfhealing.store import (
    AuditQuery,
    AuditRecord,
    AuditStore,
    MemoryAuditStore,
    SQLiteAuditStore,
    StoreHealth,
    decode_data,
    encode_data,
    memory,
    sqlite,
)


T0 = 1_767_225_600.0


def ev(i: int, data: dict[str, Any] | None = None) -> Event:
    return Event(
        EventKind.HEALING_ATTEMPTED,
        T0 + i,
        "SelfHealing",
        f"event {i}",
        target="web",
        data={"i": i} if data is None else data,
    )


class TestMemoryAuditStore:
    def test_keeps_the_newest_retention_events(self) -> None:
        """Beyond retention the oldest records fall off; ids keep growing."""
        store = MemoryAuditStore(retention=3)
        for i in range(5):
            store.record(ev(i))
        assert [3, 4, 5] == [r.id for r in store.query()]
        assert (3, 3, 5) == (store.count(), len(store), store.health.written)

    def test_data_is_a_snapshot(self) -> None:
        """Changing the published dict later does not change the record."""
        store = MemoryAuditStore()
        data: dict[str, Any] = {"list": [1]}
        store.record(ev(0, data))
        data["list"].append(2)
        data["new"] = True
        assert {"list": [1]} == store.query()[0].data

    def test_nothing_is_ever_pending(self) -> None:
        """record() stores at once, so flush() is immediately true."""
        store = MemoryAuditStore()
        store.record(ev(0))
        assert (True, 0) == (store.flush(timeout=0), store.health.pending)

    def test_records_after_close_are_dropped(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A closed store counts what it refuses and warns once."""
        store = MemoryAuditStore()
        with store:
            store.record(ev(0))
        with caplog.at_level(logging.WARNING, "selfhealing.audit"):
            store.record(ev(1))
            store.record(ev(2))
        assert StoreHealth(ok=False, pending=0, written=1, dropped=2) == (
            store.health
        )
        assert 1 == len(caplog.records)

    def test_concurrent_records_get_unique_ids(self) -> None:
        """Threads recording at once never share or skip an id."""
        store = MemoryAuditStore(retention=4000)
        start = threading.Barrier(4)

        def worker() -> None:
            start.wait()
            for i in range(1000):
                store.record(ev(i))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [
            record.id
            for page in range(4)
            for record in store.query(since_id=page * 1000, limit=1000)
        ]
        assert list(range(1, 4001)) == ids

    @pytest.mark.parametrize("retention", [0, -5, True, 2.0])
    def test_bad_retention_is_refused(self, retention: Any) -> None:
        """Retention must be a positive integer; the error names it."""
        with pytest.raises(ConfigError) as info:
            MemoryAuditStore(retention=retention)
        assert "retention" == info.value.where

    def test_repr(self) -> None:
        """The repr shows the bound and the fill."""
        store = MemoryAuditStore(retention=5)
        store.record(ev(0))
        assert "MemoryAuditStore(retention=5, records=1)" == repr(store)


class TestAuditQuery:
    @pytest.mark.parametrize(
        ("kind", "prefix"),
        [
            (None, None),
            ("healing.failed", None),
            ("healing.*", "healing."),
            ("healing.", "healing."),
            ("*", ""),
        ],
    )
    def test_kind_prefix(self, kind: str | None, prefix: str | None) -> None:
        """'*' and a trailing '.' turn the kind into a prefix."""
        assert prefix == AuditQuery(kind=kind).kind_prefix

    def test_defaults(self) -> None:
        """The default query is the last 100 events, unfiltered."""
        assert AuditQuery(limit=100) == AuditQuery()

    def test_matches(self) -> None:
        """matches() applies every filter but the limit."""
        record = AuditRecord.from_event(7, ev(3))
        assert AuditQuery(
            since_id=6, since_time=T0 + 3, kind="healing.*", target="web"
        ).matches(record)
        assert not AuditQuery(since_id=7).matches(record)
        assert not AuditQuery(since_time=T0 + 3.5).matches(record)
        assert not AuditQuery(target="db").matches(record)
        assert not AuditQuery(kind="healing.failed").matches(record)


class TestRecords:
    def test_store_health_to_dict(self) -> None:
        """Health serializes camelCase with the error time as ISO too."""
        health = StoreHealth(
            ok=False,
            pending=3,
            written=10,
            dropped=1,
            last_error="OperationalError: database is locked",
            last_error_at=T0,
        )
        assert {
            "ok": False,
            "pending": 3,
            "written": 10,
            "dropped": 1,
            "lastError": "OperationalError: database is locked",
            "lastErrorAt": "2026-01-01T00:00:00.000Z",
            "lastErrorAtEpoch": T0,
        } == health.to_dict()

    def test_to_dict_copies_data(self) -> None:
        """Changing a to_dict() result leaves the record alone."""
        record = AuditRecord.from_event(1, ev(0))
        record.to_dict()["data"]["i"] = 99
        assert {"i": 0} == record.data

    def test_encode_huge_integers(self) -> None:
        """Integers beyond 64 bits are kept exactly."""
        assert {"n": 2**80} == decode_data(encode_data({"n": 2**80}))

    def test_encode_cycle(self) -> None:
        """Data that refers to itself is replaced by a note, not an error."""
        data: dict[str, Any] = {}
        data["self"] = data
        assert {"unserializable": "dict"} == decode_data(encode_data(data))

    def test_encode_mapping_and_iterables(self) -> None:
        """Mappings and iterables that are not dicts or lists still encode."""
        data = MappingProxyType({"inner": MappingProxyType({"a": 1})})
        assert {"inner": {"a": 1}, "r": [0, 1]} == decode_data(
            encode_data({**data, "r": range(2)})
        )

    def test_decode_wraps_a_non_object(self) -> None:
        """A stored value that is not an object comes back under "value"."""
        assert {"value": [1, 2]} == decode_data("[1,2]")


class TestExports:
    def test_all_is_pinned(self) -> None:
        """The public names are pinned, and each one exists."""
        names = selfhealing.store.__all__
        assert [
            "MAX_QUERY_LIMIT",
            "AuditQuery",
            "AuditRecord",
            "AuditStore",
            "MemoryAuditStore",
            "SQLiteAuditStore",
            "StoreHealth",
            "decode_data",
            "encode_data",
        ] == names
        for name in names:
            assert getattr(selfhealing.store, name) is not None

    def test_lazy_store_classes(self) -> None:
        """The store classes re-exported lazily are the real ones."""
        assert (memory.MemoryAuditStore, sqlite.SQLiteAuditStore) == (
            MemoryAuditStore,
            SQLiteAuditStore,
        )

    def test_unknown_attribute(self) -> None:
        """An unknown name is an AttributeError, as for any module."""
        with pytest.raises(AttributeError, match="no_such_store"):
            _ = selfhealing.store.no_such_store

    def test_protocol_is_runtime_checkable(self) -> None:
        """Anything without the methods is not an AuditStore."""
        assert not isinstance(object(), AuditStore)
