"""SQLite behind the store's Session interface: the embedded default engine.

WAL mode, so that readers never wait for the writer; synchronous=FULL, so
that a 201 means the record survives a power cut (group commit in the writer
keeps that affordable: one fsync per group of batches, not per record).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from telemd.collector.ingest.records import Row
from telemd.collector.store.base import insert_sql
from telemd.errors import ConfigError

_INSERT = insert_sql("?").replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
_ROW_MARKS = _INSERT[_INSERT.index("VALUES ") + len("VALUES ") :]
# Rows per INSERT statement. executemany() would run one statement per row,
# giving up and retaking the GIL around each, and under load every retake
# waits for the threads that parse the next batches. 500 rows stay far below
# SQLite's limit on bound parameters.
ROWS_PER_STATEMENT = 500
BUSY_TIMEOUT_MS = 10_000
# 64 MiB of page cache (SQLite's default is 2 MiB): the record_id index takes
# random keys, and once it outgrows the cache every insert reads pages back.
CACHE_KIB = 65536


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Put the database in WAL mode (a property of the file, set by the first opener).

    Switching needs the database to itself, and SQLite answers "database is
    locked" at once rather than through the busy timeout when another
    connection holds it: collectors starting together on a new file wait
    for each other here instead.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


class SqliteEngine:
    name = "sqlite"
    id_column = "INTEGER PRIMARY KEY AUTOINCREMENT"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    # FTS5 yields a page's matches newest first and stops: no search runs long.
    timeouts: tuple[type[Exception], ...] = ()

    def __init__(self, path: str) -> None:
        if not path or path == ":memory:" or path.startswith("file:"):
            raise ConfigError(f"db must name a database file, as sqlite:///PATH, got {path!r}")
        self.path = path

    def connect(self) -> SqliteSession:
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            # The default, /var/lib/telemd/collector.db, lives in a directory
            # no package creates.
            os.makedirs(directory, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise sqlite3.OperationalError(f"cannot create {directory}: {exc.strerror}") from None
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,  # autocommit; transactions are explicit
            check_same_thread=False,  # the reader pool hands sessions between threads
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        _enable_wal(conn)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return SqliteSession(conn)


class SqliteSession:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def many(
        self, head: str, rows: Sequence[Sequence[object]], tail: str
    ) -> list[tuple[str, Sequence[object]]]:
        """Multi-row VALUES, ROWS_PER_STATEMENT rows each."""
        if not rows:
            return []
        marks = "(" + ", ".join("?" * len(rows[0])) + ")"
        statements: list[tuple[str, Sequence[object]]] = []
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            params = [value for row in chunk for value in row]
            statements.append((f"{head} VALUES {', '.join([marks] * len(chunk))} {tail}", params))
        return statements

    def run_all(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        for sql, params in statements:
            self.conn.execute(sql, params)

    def begin(self) -> None:
        # IMMEDIATE takes the write lock now rather than at the first write,
        # so a busy database is waited for here, not failed in the middle.
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def lock_schema(self) -> None:
        """BEGIN IMMEDIATE already holds the only write lock SQLite has."""

    def lock_purge(self) -> None:
        """BEGIN IMMEDIATE already holds the only write lock SQLite has."""

    def insert(self, rows: Sequence[Row], received_at: float) -> dict[str, int]:
        (last_id,) = self.conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()
        changes = self.conn.total_changes
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            chunk = rows[start : start + ROWS_PER_STATEMENT]
            params: list[object] = []
            for row in chunk:
                params.append(received_at)
                params.extend(row)
            cursor = self.conn.execute(_insert_many(len(chunk)), params)
        if self.conn.total_changes - changes == len(rows) and cursor.lastrowid is not None:
            # All new: AUTOINCREMENT gave them consecutive ids, in order, and
            # nothing else writes inside this transaction.
            first = cursor.lastrowid - len(rows) + 1
            return {str(row[0]): first + i for i, row in enumerate(rows)}
        # Some were already there: the rows above last_id are the new ones.
        added = self.conn.execute("SELECT record_id, id FROM records WHERE id > ?", (last_id,))
        return dict(added.fetchall())

    def close(self) -> None:
        self.conn.close()


@functools.lru_cache(maxsize=ROWS_PER_STATEMENT)
def _insert_many(n: int) -> str:
    return _INSERT + (", " + _ROW_MARKS) * (n - 1)
