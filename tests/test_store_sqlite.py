from __future__ import annotations

import logging
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from selfhealing.events import Event, EventKind
from selfhealing.exceptions import ConfigError, StoreError
from selfhealing.store import AuditRecord, AuditStore
from selfhealing.store.memory import MemoryAuditStore
from selfhealing.store.sqlite import SQLiteAuditStore, _successor
from selfhealing.testing import FakeClock


MakeStore = Callable[..., SQLiteAuditStore]

T0 = 1_767_225_600.0
BIG = "x" * 2000


def ev(
    i: int,
    kind: EventKind = EventKind.HEALING_ATTEMPTED,
    *,
    target: str | None = "web",
    data: Mapping[Any, Any] | None = None,
) -> Event:
    return Event(
        kind,
        T0 + i,
        "SelfHealing",
        f"event {i}",
        target=target,
        data={"i": i} if data is None else data,
    )


def messages(records: list[AuditRecord]) -> list[str]:
    return [r.message for r in records]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll *predicate* until it holds; no fixed sleep decides a test."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.005)
    return True


def writer_threads(store: SQLiteAuditStore) -> list[threading.Thread]:
    name = f"selfhealing-audit-writer:{store.path}"
    return [t for t in threading.enumerate() if name == t.name]


@pytest.fixture(name="make_store")
def _make_store(tmp_path: Path, clock: FakeClock) -> Iterator[MakeStore]:
    stores: list[SQLiteAuditStore] = []

    def make(
        path: Path | None = None, *, open_: bool = True, **kwargs: Any
    ) -> SQLiteAuditStore:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("busy_timeout", 0.05)
        store = SQLiteAuditStore(path or tmp_path / "audit.db", **kwargs)
        stores.append(store)
        if open_:
            store.open()
        return store

    yield make
    for store in stores:
        store.close(timeout=1)


@pytest.fixture(name="any_store", params=["sqlite", "memory"])
def _any_store(
    request: pytest.FixtureRequest, make_store: MakeStore, clock: FakeClock
) -> AuditStore:
    if request.param == "sqlite":
        return make_store()
    return MemoryAuditStore(clock=clock)


def record_all(store: AuditStore, events: list[Event]) -> None:
    for event in events:
        store.record(event)
    assert store.flush(timeout=5)


class TestQueryContract:
    """What every AuditStore does, checked on SQLite and memory alike."""

    def test_round_trips_every_field(self, any_store: AuditStore) -> None:
        """Every Event field comes back, nested and unicode data included."""
        data = {
            "attempt": 3,
            "ratio": 0.25,
            "ok": False,
            "none": None,
            "nested": {"list": [1, "two", {"three": [3.0]}], "empty": {}},
            "ключ": "значение ✓ 🚑",
        }
        event = Event(
            EventKind.DORMANT_EXITED,
            T0 + 0.125,
            "SelfHealing",
            "resumed after fix — ✓",
            target="web",
            actor="alice",
            reason="disk cleaned",
            data=data,
        )
        record_all(any_store, [event])
        expected = AuditRecord(
            id=1,
            kind="engine.dormant_exited",
            at=T0 + 0.125,
            component="SelfHealing",
            message="resumed after fix — ✓",
            target="web",
            actor="alice",
            reason="disk cleaned",
            data=data,
        )
        assert [expected] == any_store.query()

    def test_to_dict_is_the_api_shape(self, any_store: AuditStore) -> None:
        """Records serialize camelCase with an ISO time and the epoch."""
        record_all(any_store, [ev(0, target=None)])
        assert {
            "id": 1,
            "kind": "healing.attempted",
            "at": "2026-01-01T00:00:00.000Z",
            "atEpoch": T0,
            "component": "SelfHealing",
            "message": "event 0",
            "target": None,
            "actor": None,
            "reason": None,
            "data": {"i": 0},
        } == any_store.query()[0].to_dict()

    def test_ids_ascend_newest_last(self, any_store: AuditStore) -> None:
        """Ids grow by one per event and results come oldest first."""
        record_all(any_store, [ev(i) for i in range(5)])
        records = any_store.query()
        assert [1, 2, 3, 4, 5] == [r.id for r in records]
        assert [f"event {i}" for i in range(5)] == messages(records)

    def test_odd_data_values_are_kept_as_json(
        self, any_store: AuditStore
    ) -> None:
        """Values JSON cannot hold become text or lists; the event is kept."""
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        data = {
            "path": Path("/srv/app"),
            "tags": {"b", "a"},
            "at": moment,
            "kind": EventKind.FLAG_CHANGED,
            "pair": (1, 2),
            7: "int key",
        }
        record_all(any_store, [ev(0, data=data)])
        assert {
            "path": "/srv/app",
            "tags": ["a", "b"],
            "at": "2026-01-02T03:04:05+00:00",
            "kind": "flag.changed",
            "pair": [1, 2],
            "7": "int key",
        } == any_store.query()[0].data

    @pytest.mark.parametrize(
        ("kind", "expected"),
        [
            pytest.param("healing.failed", ["event 1"], id="exact"),
            pytest.param("healing.*", ["event 0", "event 1"], id="star"),
            pytest.param("healing.", ["event 0", "event 1"], id="dot"),
            pytest.param("heal*", ["event 0", "event 1"], id="short-star"),
            pytest.param("*", [f"event {i}" for i in range(4)], id="all"),
            pytest.param("healing", [], id="bare-prefix-is-exact"),
            pytest.param("HEALING.*", [], id="case-sensitive"),
            pytest.param("breaker.*", ["event 3"], id="other-family"),
        ],
    )
    def test_kind_filter(
        self, any_store: AuditStore, kind: str, expected: list[str]
    ) -> None:
        """Kind matches exactly, or as a prefix when it ends in '.' or '*'."""
        record_all(
            any_store,
            [
                ev(0, EventKind.HEALING_ATTEMPTED),
                ev(1, EventKind.HEALING_FAILED),
                ev(2, EventKind.DORMANT_ENTERED),
                ev(3, EventKind.BREAKER_TRANSITION),
            ],
        )
        assert expected == messages(any_store.query(kind=kind))

    def test_target_filter(self, any_store: AuditStore) -> None:
        """Only events about the given target are returned."""
        record_all(
            any_store,
            [ev(0, target="web"), ev(1, target="db"), ev(2, target=None)],
        )
        assert ["event 1"] == messages(any_store.query(target="db"))

    def test_since_id_is_exclusive(self, any_store: AuditStore) -> None:
        """since_id returns only events after that id."""
        record_all(any_store, [ev(i) for i in range(5)])
        assert [4, 5] == [r.id for r in any_store.query(since_id=3)]

    def test_since_id_pages_forward(self, any_store: AuditStore) -> None:
        """With since_id, limit takes the first events after it."""
        record_all(any_store, [ev(i) for i in range(10)])
        assert [3, 4] == [r.id for r in any_store.query(since_id=2, limit=2)]

    def test_limit_without_since_id_is_the_last_n(
        self, any_store: AuditStore
    ) -> None:
        """Without since_id, limit keeps the newest events, still ascending."""
        record_all(any_store, [ev(i) for i in range(10)])
        assert [8, 9, 10] == [r.id for r in any_store.query(limit=3)]

    def test_since_time_is_inclusive(self, any_store: AuditStore) -> None:
        """since_time keeps events at or after that epoch."""
        record_all(any_store, [ev(i) for i in range(5)])
        assert ["event 3", "event 4"] == messages(
            any_store.query(since_time=T0 + 3)
        )

    def test_filters_combine(self, any_store: AuditStore) -> None:
        """Every filter applies at once, before the limit."""
        events = [
            ev(i, EventKind.HEALING_FAILED, target="db" if i % 2 else "web")
            for i in range(20)
        ]
        events.append(ev(20, EventKind.FLAG_CHANGED, target="db"))
        record_all(any_store, events)
        found = any_store.query(
            kind="healing.*", target="db", since_time=T0 + 5, limit=3
        )
        assert ["event 15", "event 17", "event 19"] == messages(found)

    @pytest.mark.parametrize("limit", [0, -1, 1001, True, 2.5, "10"], ids=repr)
    def test_bad_limit_is_refused(
        self, any_store: AuditStore, limit: Any
    ) -> None:
        """A limit outside 1..1000 is a ConfigError naming the limit."""
        with pytest.raises(ConfigError) as info:
            any_store.query(limit=limit)
        assert "limit" == info.value.where

    @pytest.mark.parametrize(
        ("name", "value"),
        [("kind", ""), ("target", ""), ("since_id", "3"), ("since_time", "x")],
    )
    def test_bad_filter_is_refused(
        self, any_store: AuditStore, name: str, value: Any
    ) -> None:
        """An unusable filter value is a ConfigError naming the filter."""
        with pytest.raises(ConfigError) as info:
            any_store.query(**{name: value})
        assert name == info.value.where

    def test_limit_bounds_are_accepted(self, any_store: AuditStore) -> None:
        """Limits 1 and 1000 are both valid."""
        record_all(any_store, [ev(i) for i in range(3)])
        assert (1, 3) == (
            len(any_store.query(limit=1)),
            len(any_store.query(limit=1000)),
        )

    def test_health_after_writes(self, any_store: AuditStore) -> None:
        """A healthy store has nothing pending and counts what it wrote."""
        record_all(any_store, [ev(i) for i in range(3)])
        health = any_store.health
        assert (True, 0, 3, 0, None) == (
            health.ok,
            health.pending,
            health.written,
            health.dropped,
            health.last_error,
        )

    def test_is_an_audit_store(self, any_store: AuditStore) -> None:
        """Both stores satisfy the AuditStore protocol."""
        assert isinstance(any_store, AuditStore)


class TestSQLiteBasics:
    def test_creates_directories_and_uses_wal(
        self, tmp_path: Path, make_store: MakeStore
    ) -> None:
        """open() creates missing directories and a WAL database."""
        path = tmp_path / "state" / "deep" / "audit.db"
        make_store(path)
        with closing(sqlite3.connect(path)) as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert "wal" == mode

    def test_ids_continue_after_reopen(
        self, tmp_path: Path, make_store: MakeStore
    ) -> None:
        """A reopened database keeps numbering after its last id."""
        first = make_store()
        record_all(first, [ev(i) for i in range(3)])
        first.close()
        second = make_store()
        record_all(second, [ev(i) for i in range(3, 5)])
        assert [1, 2, 3, 4, 5] == [r.id for r in second.query()]

    def test_integrity_check_and_count(self, make_store: MakeStore) -> None:
        """A healthy database reports "ok" and counts its rows."""
        store = make_store()
        record_all(store, [ev(i) for i in range(7)])
        assert ("ok", 7) == (store.integrity_check(), store.count())

    def test_events_recorded_before_open_are_written(
        self, make_store: MakeStore
    ) -> None:
        """record() before open() queues; open() writes the queue."""
        store = make_store(open_=False)
        store.record(ev(0))
        health = store.health
        assert (False, 1, True) == (
            store.flush(timeout=0),
            health.pending,
            health.ok,
        )
        store.open()
        assert store.flush(timeout=5)
        assert ["event 0"] == messages(store.query())

    def test_query_before_open_is_an_error(
        self, make_store: MakeStore
    ) -> None:
        """Reading an unopened store raises StoreError."""
        store = make_store(open_=False)
        with pytest.raises(StoreError, match="not open"):
            store.query()

    def test_reopening_a_closed_store_is_refused(
        self, make_store: MakeStore
    ) -> None:
        """A closed store stays closed; open() says so."""
        store = make_store()
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.open()

    def test_open_twice_is_harmless(self, make_store: MakeStore) -> None:
        """A second open() of an open store changes nothing."""
        store = make_store()
        store.open()
        assert 1 == len(writer_threads(store))

    def test_context_manager(self, tmp_path: Path, clock: FakeClock) -> None:
        """``with`` opens the store and closes it, flushing."""
        with SQLiteAuditStore(tmp_path / "a.db", clock=clock) as store:
            store.record(ev(0))
        reopened = SQLiteAuditStore(tmp_path / "a.db", clock=clock)
        with reopened:
            assert 1 == reopened.count()

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("retention", 0),
            ("batch_max", -1),
            ("max_pending", True),
            ("busy_timeout", -1.0),
            ("busy_timeout", "5s"),
        ],
    )
    def test_bad_settings_are_refused(
        self, tmp_path: Path, name: str, value: Any
    ) -> None:
        """A bad constructor argument is a ConfigError naming it."""
        with pytest.raises(ConfigError) as info:
            SQLiteAuditStore(tmp_path / "a.db", **{name: value})
        assert name == info.value.where


class TestKindRange:
    @pytest.mark.parametrize(
        ("prefix", "upper"),
        [
            ("healing.", "healing/"),
            ("a\U0010ffff", "b"),
            ("\U0010ffff", None),
            ("x\ud7ff", "x\ue000"),
        ],
        ids=["dot", "max-code-point", "only-max", "before-surrogates"],
    )
    def test_successor(self, prefix: str, upper: str | None) -> None:
        """The prefix range ends at the least string past the prefix."""
        assert upper == _successor(prefix)


class TestRetention:
    def test_trims_the_oldest(self, make_store: MakeStore) -> None:
        """Only the newest *retention* events are kept."""
        store = make_store(retention=100, batch_max=30)
        record_all(store, [ev(i) for i in range(250)])
        records = store.query(limit=1000)
        assert (100, "event 150", "event 249") == (
            store.count(),
            records[0].message,
            records[-1].message,
        )
        assert list(range(151, 251)) == [r.id for r in records]

    def test_smaller_retention_applies_on_open(
        self, make_store: MakeStore
    ) -> None:
        """Reopening with a smaller retention trims at once."""
        first = make_store()
        record_all(first, [ev(i) for i in range(50)])
        first.close()
        second = make_store(retention=10)
        records = second.query(limit=1000)
        assert (10, "event 40") == (second.count(), records[0].message)


class TestWriter:
    def test_record_does_not_block(self, make_store: MakeStore) -> None:
        """10,000 record() calls return in well under a second in total."""
        store = make_store()
        events = [ev(i) for i in range(10_000)]
        started = time.perf_counter()
        for event in events:
            store.record(event)
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0
        assert store.flush(timeout=10)
        assert 10_000 == store.count()

    def test_queued_events_are_written_in_full_batches(
        self, make_store: MakeStore
    ) -> None:
        """A backlog of 10,000 events takes 20 commits of 500."""
        store = make_store(open_=False)
        for i in range(10_000):
            store.record(ev(i))
        store.open()
        assert store.flush(timeout=10)
        assert (20, 10_000) == (store.commits, store.health.written)

    def test_live_writes_are_batched(self, make_store: MakeStore) -> None:
        """Events recorded while the writer runs share transactions."""
        store = make_store()
        for i in range(10_000):
            store.record(ev(i))
        assert store.flush(timeout=10)
        assert 10_000 == store.health.written
        assert store.commits <= 1_000

    def test_order_is_kept(self, make_store: MakeStore) -> None:
        """Events are stored in the order they were recorded."""
        store = make_store(batch_max=7)
        record_all(store, [ev(i) for i in range(100)])
        assert [f"event {i}" for i in range(100)] == messages(
            store.query(limit=1000)
        )


class TestFailures:
    def test_locked_database_loses_nothing(
        self,
        make_store: MakeStore,
        clock: FakeClock,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """While another connection holds the lock, events wait; then land."""
        caplog.set_level(logging.DEBUG, "selfhealing.audit")
        store = make_store()
        record_all(store, [ev(0)])
        locker = sqlite3.connect(store.path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            for i in range(1, 51):
                store.record(ev(i))
            assert wait_until(lambda: store.failed_writes >= 2)
            health = store.health
            assert (False, 50, 1) == (health.ok, health.pending, store.count())
            assert "database is locked" in (health.last_error or "")
            assert clock.time() == health.last_error_at
            assert not store.flush(timeout=0)
        finally:
            locker.rollback()
            locker.close()
        assert store.flush(timeout=5)
        assert [f"event {i}" for i in range(51)] == messages(
            store.query(limit=1000)
        )
        assert (True, 0, 0) == (
            store.health.ok,
            store.health.pending,
            store.health.dropped,
        )
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "selfhealing.audit"
        ]
        assert 2 == len(warnings)
        assert "write failed, keeping 50 events pending" in warnings[0]
        assert "audit store recovered, 50 events caught up" == warnings[1]

    def test_full_disk_loses_nothing(self, make_store: MakeStore) -> None:
        """A full database keeps events pending until space returns."""
        store = make_store()
        record_all(store, [ev(0)])
        store._limit_pages(1)
        for i in range(1, 201):
            store.record(ev(i, data={"blob": BIG}))
        assert wait_until(lambda: store.failed_writes >= 1)
        health = store.health
        assert (False, 200, 1) == (health.ok, health.pending, store.count())
        assert "full" in (health.last_error or "")
        store._limit_pages(4_294_967_294)
        assert store.flush(timeout=5)
        records = store.query(limit=1000)
        assert [f"event {i}" for i in range(201)] == messages(records)
        assert {"blob": BIG} == records[-1].data
        assert (True, "ok") == (store.health.ok, store.integrity_check())

    def test_queue_limit_drops_the_oldest(
        self, make_store: MakeStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Beyond max_pending the oldest events go, counted and logged once."""
        store = make_store(open_=False, max_pending=10)
        with caplog.at_level(logging.WARNING, "selfhealing.audit"):
            for i in range(25):
                store.record(ev(i))
        assert (10, 15) == (store.health.pending, store.health.dropped)
        assert 1 == len(caplog.records)
        store.open()
        assert store.flush(timeout=5)
        assert [f"event {i}" for i in range(15, 25)] == messages(store.query())
        assert (10, 15) == (store.health.written, store.health.dropped)

    def test_queue_limit_during_an_outage(self, make_store: MakeStore) -> None:
        """While the database is locked the queue stays bounded."""
        store = make_store(max_pending=20)
        locker = sqlite3.connect(store.path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            for i in range(100):
                store.record(ev(i))
            assert wait_until(lambda: store.failed_writes >= 1)
            assert 20 == store.health.pending
        finally:
            locker.rollback()
            locker.close()
        assert store.flush(timeout=5)
        records = store.query(limit=1000)
        assert "event 99" == records[-1].message
        assert 100 == len(records) + store.health.dropped

    def test_close_gives_up_on_a_locked_database(
        self, make_store: MakeStore
    ) -> None:
        """close() stops within its timeout and counts unwritten events."""
        store = make_store()
        locker = sqlite3.connect(store.path, isolation_level=None)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            for i in range(5):
                store.record(ev(i))
            store.close(timeout=0.2)
        finally:
            locker.rollback()
            locker.close()
        assert (0, 5, False) == (
            store.health.pending,
            store.health.dropped,
            store.health.ok,
        )
        assert [] == writer_threads(store)


class TestFiles:
    def test_garbage_file_is_refused(
        self, tmp_path: Path, make_store: MakeStore
    ) -> None:
        """A file that is not a database raises StoreError naming it."""
        path = tmp_path / "audit.db"
        path.write_bytes(b"this is not a database\x00\xff" * 200)
        store = make_store(path, open_=False)
        with pytest.raises(StoreError, match=re.escape(str(path))):
            store.open()
        assert [] == writer_threads(store)

    def test_damaged_database_is_refused(
        self, tmp_path: Path, make_store: MakeStore
    ) -> None:
        """A database with overwritten pages fails the check at open()."""
        path = tmp_path / "audit.db"
        store = make_store(path)
        record_all(store, [ev(i, data={"blob": BIG}) for i in range(50)])
        store.close()
        raw = bytearray(path.read_bytes())
        page = 4096
        raw[2 * page : 2 * page + 3 * page] = b"\xa5" * (3 * page)
        path.write_bytes(bytes(raw))
        with pytest.raises(StoreError, match=re.escape(str(path))):
            make_store(path, open_=False).open()

    def test_close_stops_the_thread(self, make_store: MakeStore) -> None:
        """After close() no writer thread is left and records are dropped."""
        store = make_store()
        record_all(store, [ev(0)])
        assert 1 == len(writer_threads(store))
        store.close()
        assert [] == writer_threads(store)
        store.record(ev(1))
        assert (False, 1) == (store.health.ok, store.health.dropped)

    @pytest.mark.slow
    def test_survives_kill_9(self, tmp_path: Path) -> None:
        """Everything flushed before a SIGKILL is intact afterwards."""
        path = tmp_path / "audit.db"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), "1000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert "flushed\n" == proc.stdout.readline()
            assert "recording\n" == proc.stdout.readline()
            # Writes are in flight: the kill lands mid-stream.
            assert wait_until(lambda: rows_in(path) > 3000)
        finally:
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate(timeout=10)
        assert -signal.SIGKILL == proc.returncode, err
        store = SQLiteAuditStore(path)
        with store:
            assert "ok" == store.integrity_check()
            first = store.query(since_id=0, limit=1000)
            assert [f"event {i}" for i in range(1000)] == messages(first)
            assert list(range(1, 1001)) == [r.id for r in first]
            total = store.count()
            assert total > 3000
            with closing(sqlite3.connect(path)) as conn:
                ids = [
                    row[0]
                    for row in conn.execute(
                        "SELECT id FROM events ORDER BY id"
                    )
                ]
            assert list(range(1, total + 1)) == ids


def rows_in(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


CHILD = """
import sys
import threading

from selfhealing.events import Event, EventKind
from selfhealing.store.sqlite import SQLiteAuditStore, _successor

path, n = sys.argv[1], int(sys.argv[2])
store = SQLiteAuditStore(
    path, batch_max=100, retention=10_000_000, max_pending=10_000_000
)
store.open()


def event(i):
    return Event(
        EventKind.HEALING_ATTEMPTED, float(i), "SelfHealing", f"event {i}",
        data={"i": i},
    )


for i in range(n):
    store.record(event(i))
assert store.flush(timeout=10)
print("flushed", flush=True)
# Record on, in bursts with short idle gaps as an event loop has (a loop
# that never idles would starve the writer of the GIL), until killed.
gap = threading.Event()
i = n
while True:
    for _ in range(200):
        store.record(event(i))
        i += 1
    if i == n + 2000:
        print("recording", flush=True)
    gap.wait(0.001)
"""
