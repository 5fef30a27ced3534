"""SQLiteAuditStore: the daemon's audit trail, surviving a crash.

record() runs on the event loop thread, so it only appends the event (as a
ready row) to a bounded deque. One writer thread owns the write connection:
it takes up to ``batch_max`` pending rows, inserts them in one transaction
and only then removes them from the deque. A failed write (disk full,
database locked, I/O error) therefore loses nothing: the rows stay pending,
in order, and the writer retries with backoff until the database accepts
them. The queue is bounded; when it is full the oldest events are dropped
and counted, because the event loop must never wait for a disk.

The database runs in WAL mode with ``synchronous=NORMAL``: a commit
survives a crash of the process (not necessarily of the machine), and
readers (query, count) never wait for the writer. query() reads committed
rows only, so whatever the API has shown survives a ``kill -9``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import sqlite3
import threading

from collections import deque
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from selfhealing.clock import Clock, seconds, system_clock
from selfhealing.events import Event
from selfhealing.exceptions import ConfigError, StoreError
from selfhealing.store import (
    AuditQuery,
    AuditRecord,
    StoreHealth,
    decode_data,
    encode_data,
)


__all__ = ["SQLiteAuditStore"]

_log = logging.getLogger("selfhealing.audit")

_SCHEMA = (
    # AUTOINCREMENT: ids never go back, even if someone empties the table,
    # so an API client paging with since_id never misses an event.
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        at REAL NOT NULL,
        component TEXT NOT NULL,
        message TEXT NOT NULL,
        target TEXT,
        actor TEXT,
        reason TEXT,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_kind ON events (kind)",
    "CREATE INDEX IF NOT EXISTS events_target ON events (target)",
    "CREATE INDEX IF NOT EXISTS events_at ON events (at)",
)
_INSERT = (
    "INSERT INTO events"
    " (kind, at, component, message, target, actor, reason, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS = "id, kind, at, component, message, target, actor, reason, data"

_RETRY_MIN = 0.1
_RETRY_MAX = 5.0
_CLOSE_TIMEOUT = 5.0
# The largest value SQLite accepts; what "no limit" means to max_page_count.
_NO_PAGE_LIMIT = 4_294_967_294

_Row = tuple[str, float, str, str, str | None, str | None, str | None, str]


class SQLiteAuditStore:
    """The audit trail in one SQLite file, written by a background thread.

    ``open()`` before use (or ``with store:``); events recorded earlier wait
    in the queue. ``close()`` writes what it can within a few seconds.
    *retention* caps the rows kept, oldest deleted first; *max_pending*
    caps the events waiting for the disk; *busy_timeout* is how long one
    write waits for another process's lock before it counts as failed.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        retention: int = 100_000,
        clock: Clock = system_clock,
        batch_max: int = 500,
        max_pending: int = 100_000,
        busy_timeout: float | timedelta = 5.0,
        on_commit: Callable[[int, float], object] | None = None,
    ) -> None:
        self.path = Path(path)
        self.retention = _positive(retention, "retention")
        self.batch_max = _positive(batch_max, "batch_max")
        self.max_pending = _positive(max_pending, "max_pending")
        self.busy_timeout = seconds(busy_timeout, name="busy_timeout")
        if self.busy_timeout < 0:
            raise ConfigError(
                f"must not be negative, got {busy_timeout!r}",
                where="busy_timeout",
            )
        self._clock = clock
        # Called on the writer thread as on_commit(events, seconds).
        self._on_commit = on_commit
        self._lock = threading.Lock()
        # Both conditions share the lock that guards the queue.
        self._work = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._pending: deque[tuple[int, _Row]] = deque()
        self._seq = 0
        self._written = 0
        self._dropped = 0
        self._commits = 0
        self._failed_writes = 0
        self._failing = False
        self._outage: int | None = None
        self._drop_warned = False
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._state = "new"
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._page_limit = _NO_PAGE_LIMIT
        self._applied_limit = -1

    # -- lifecycle ----------------------------------------------------------

    def open(self) -> None:
        """Create or check the database, then start the writer thread.

        Raises StoreError, naming the file, when it cannot be opened, is
        not an SQLite database, or fails its quick integrity check.
        """
        with self._lock:
            if self._state == "open":
                return
            if self._state == "closed":
                raise StoreError(f"audit store {self.path} is closed")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._setup()
            reader = self._connect(check_same_thread=False)
            reader.execute("PRAGMA query_only = ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open audit database {self.path}: {exc}"
            ) from exc
        self._reader = reader
        thread = threading.Thread(
            target=self._run,
            name=f"selfhealing-audit-writer:{self.path}",
            daemon=True,
        )
        with self._lock:
            self._state = "open"
            self._thread = thread
        thread.start()
        # A daemon thread dies with the interpreter; flush before that.
        atexit.register(self.close)

    def close(self, *, timeout: float = _CLOSE_TIMEOUT) -> None:
        """Write what can be written within *timeout*, then stop.

        Events still pending afterwards (the database kept failing) are
        counted as dropped and logged.
        """
        with self._lock:
            if self._state == "closed":
                return
            was_open = self._state == "open"
            self._state = "closed"
        atexit.unregister(self.close)
        if was_open:
            self.flush(timeout)
        self._stop.set()
        with self._work:
            self._work.notify_all()
        if self._thread is not None:
            # A write in progress may wait out busy_timeout first.
            self._thread.join(self.busy_timeout + 1.0)
            if self._thread.is_alive():
                _log.error(
                    "audit writer thread did not stop",
                    extra={"facts": {"path": str(self.path)}},
                )
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        with self._lock:
            lost = len(self._pending)
            self._pending.clear()
            self._dropped += lost
            self._progress.notify_all()
        if lost:
            _log.warning(
                "audit store closed with %d events not written",
                lost,
                extra={"facts": {"path": str(self.path)}},
            )

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the AuditStore protocol --------------------------------------------

    def record(self, event: Event) -> None:
        """Queue *event* for the writer and return at once.

        Serializing here (not in the writer) freezes the data as it was
        when published, and keeps a pending event small.
        """
        row: _Row = (
            str(event.kind),
            float(event.at),
            event.component,
            event.message,
            event.target,
            event.actor,
            event.reason,
            encode_data(event.data),
        )
        with self._lock:
            if self._state == "closed":
                self._note_drop(1)
                return
            self._seq += 1
            self._pending.append((self._seq, row))
            if len(self._pending) > self.max_pending:
                self._pending.popleft()
                self._note_drop(1)
            self._work.notify()

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
        sql, params = _select(spec)
        rows = self._read(sql, params)
        if spec.since_id is None:
            rows.reverse()
        return [_to_record(row) for row in rows]

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event recorded before the call is committed.

        Blocking: call it from a worker thread, not the event loop.
        """
        with self._lock:
            target = self._seq

            def done() -> bool:
                return not self._pending or self._pending[0][0] > target

            if self._thread is None or not self._thread.is_alive():
                return done()
            return self._progress.wait_for(done, timeout)

    @property
    def health(self) -> StoreHealth:
        with self._lock:
            return StoreHealth(
                # Not yet open is fine (events queue); closed is not.
                ok=self._state != "closed" and not self._failing,
                pending=len(self._pending),
                written=self._written,
                dropped=self._dropped,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
            )

    # -- extras -------------------------------------------------------------

    @property
    def commits(self) -> int:
        """Transactions committed by the writer (each holds a batch)."""
        return self._commits

    @property
    def failed_writes(self) -> int:
        """Write attempts that failed and were retried."""
        return self._failed_writes

    def count(self) -> int:
        """How many records the database holds (committed ones)."""
        return int(self._read("SELECT count(*) FROM events", ())[0][0])

    def integrity_check(self) -> str:
        """SQLite's full integrity check: ``"ok"`` or the problems found."""
        rows = self._read("PRAGMA integrity_check", ())
        return "\n".join(str(row[0]) for row in rows)

    def _limit_pages(self, pages: int) -> None:
        # For tests: a low max_page_count makes SQLite answer "database or
        # disk is full" exactly as a full disk does. Applied by the writer
        # before its next attempt.
        self._page_limit = pages

    def __repr__(self) -> str:
        return f"SQLiteAuditStore({str(self.path)!r}, state={self._state})"

    # -- connections ----------------------------------------------------------

    def _connect(
        self, *, check_same_thread: bool = True
    ) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=check_same_thread,
        )

    def _setup(self) -> None:
        conn = self._connect()
        try:
            # The first statement is where a garbage file shows itself.
            conn.execute("PRAGMA journal_mode = WAL")
            problems = [
                str(row[0]) for row in conn.execute("PRAGMA quick_check")
            ]
            if problems != ["ok"]:
                raise StoreError(
                    f"audit database {self.path} is corrupt: "
                    + "; ".join(problems[:5])
                )
            for statement in _SCHEMA:
                conn.execute(statement)
            # A smaller retention than last time takes effect at once.
            _trim(conn, self.retention)
        except sqlite3.OperationalError:
            raise  # locked, unreadable, disk full: not corruption
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"audit database {self.path} is corrupt or not an SQLite "
                f"database: {exc}"
            ) from exc
        finally:
            conn.close()

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._reader_lock:
            if self._reader is None:
                raise StoreError(f"audit store {self.path} is not open")
            try:
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot read audit database {self.path}: {exc}"
                ) from exc

    # -- the writer thread ----------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        delay = _RETRY_MIN
        try:
            while not self._stop.is_set():
                with self._lock:
                    while not self._pending and not self._stop.is_set():
                        self._work.wait()
                    batch = list(
                        itertools.islice(self._pending, self.batch_max)
                    )
                if not batch:
                    break
                started = self._clock.monotonic()
                try:
                    conn = self._write(conn, batch)
                except sqlite3.Error as exc:
                    _discard(conn)
                    conn = None
                    self._failed(exc)
                    if self._stop.wait(delay):
                        break
                    delay = min(delay * 2, _RETRY_MAX)
                else:
                    delay = _RETRY_MIN
                    # Reported first, so whoever flush() wakes sees it.
                    self._report(len(batch), started)
                    self._committed(batch)
        except Exception:
            _log.exception("audit writer thread crashed")
            with self._lock:
                self._failing = True
                self._last_error = "writer thread crashed"
                self._last_error_at = self._clock.time()
        finally:
            _discard(conn)

    def _write(
        self, conn: sqlite3.Connection | None, batch: list[tuple[int, _Row]]
    ) -> sqlite3.Connection:
        if conn is None:
            # A fresh connection after every failure: an I/O error can
            # leave a connection unusable, and reconnecting is cheap.
            conn = self._connect()
            conn.execute("PRAGMA synchronous = NORMAL")
            self._applied_limit = -1
        if self._applied_limit != self._page_limit:
            conn.execute(f"PRAGMA max_page_count = {int(self._page_limit)}")
            self._applied_limit = self._page_limit
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, [row for _, row in batch])
            _trim(conn, self.retention)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                # The connection is discarded next; the original error is
                # the one worth reporting.
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return conn

    def _committed(self, batch: list[tuple[int, _Row]]) -> None:
        last_seq = batch[-1][0]
        caught_up: int | None = None
        with self._lock:
            removed = 0
            while self._pending and self._pending[0][0] <= last_seq:
                self._pending.popleft()
                removed += 1
            # record() may have dropped some of this batch as "oldest"
            # while it was being written; they were written after all.
            self._dropped -= len(batch) - removed
            self._written += len(batch)
            self._commits += 1
            self._failing = False
            if self._outage is not None:
                self._outage += len(batch)
                if not self._pending:
                    caught_up, self._outage = self._outage, None
            if not self._pending:
                self._drop_warned = False
            if caught_up is not None:
                # Said before flush() waiters wake, so they see it logged.
                _log.warning(
                    "audit store recovered, %d events caught up",
                    caught_up,
                    extra={"facts": {"path": str(self.path)}},
                )
            self._progress.notify_all()

    def _report(self, events: int, started: float) -> None:
        if self._on_commit is None:
            return
        try:
            self._on_commit(events, self._clock.monotonic() - started)
        except Exception:
            # An observer (metrics) must never stop the writer thread.
            _log.exception("audit store on_commit hook failed")

    def _failed(self, exc: sqlite3.Error) -> None:
        with self._lock:
            self._failed_writes += 1
            self._failing = True
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._last_error_at = self._clock.time()
            first = self._outage is None
            if first:
                # An outage lasts until the backlog is written: one
                # warning for it, however many retries it takes.
                self._outage = 0
            pending = len(self._pending)
        if first:
            _log.warning(
                "audit store write failed, keeping %d events pending and "
                "retrying: %s",
                pending,
                exc,
                extra={"facts": {"path": str(self.path)}},
            )
        else:
            _log.debug("audit store write failed again: %s", exc)

    def _note_drop(self, count: int) -> None:
        # Called with the lock held, possibly on the event loop thread.
        self._dropped += count
        if not self._drop_warned:
            self._drop_warned = True
            _log.warning(
                "audit store queue full (%d pending) or closed: dropping "
                "the oldest events",
                len(self._pending),
                extra={"facts": {"path": str(self.path)}},
            )


def _positive(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(
            f"must be a positive integer, got {value!r}", where=name
        )
    return value


def _trim(conn: sqlite3.Connection, retention: int) -> None:
    # Ids are contiguous (rows are only ever deleted oldest first), so the
    # cut-off is arithmetic: the delete is a range seek on the primary key
    # costing O(rows deleted), and a no-op seek while under retention.
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    if row is not None and row[0] is not None:
        conn.execute("DELETE FROM events WHERE id <= ?", (row[0] - retention,))


def _discard(conn: sqlite3.Connection | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            _log.debug("closing a failed audit connection failed too")


def _select(spec: AuditQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if spec.since_id is not None:
        clauses.append("id > ?")
        params.append(spec.since_id)
    if spec.since_time is not None:
        clauses.append("at >= ?")
        params.append(float(spec.since_time))
    if spec.target is not None:
        clauses.append("target = ?")
        params.append(spec.target)
    if spec.kind is not None:
        prefix = spec.kind_prefix
        if prefix is None:
            clauses.append("kind = ?")
            params.append(spec.kind)
        elif prefix:
            # A range, not LIKE: exact case, no wildcards, uses the index.
            clauses.append("kind >= ?")
            params.append(prefix)
            upper = _successor(prefix)
            if upper is not None:
                clauses.append("kind < ?")
                params.append(upper)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "ASC" if spec.since_id is not None else "DESC"
    sql = f"SELECT {_COLUMNS} FROM events{where} ORDER BY id {order} LIMIT ?"  # noqa: S608 (clauses are constants)
    params.append(spec.limit)
    return sql, tuple(params)


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with *prefix*."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    following = chr(ord(stripped[-1]) + 1)
    if "\ud800" <= following <= "\udfff":
        # Surrogates cannot be encoded as UTF-8; the next real code point.
        following = "\ue000"
    return stripped[:-1] + following


def _to_record(row: tuple[Any, ...]) -> AuditRecord:
    return AuditRecord(
        id=row[0],
        kind=row[1],
        at=row[2],
        component=row[3],
        message=row[4],
        target=row[5],
        actor=row[6],
        reason=row[7],
        data=decode_data(row[8]),
    )
