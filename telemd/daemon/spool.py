"""The durable queue between intake and delivery: one SQLite database in WAL mode.

One writer thread owns every write. Intake submits rows from the event loop;
the writer takes everything queued, inserts it in one transaction and commits
(WAL + synchronous=FULL: the commit is fsync'd), then reports back to the
loop. Frames that arrive while a commit runs go into the next transaction:
group commit, so durability costs one fsync per batch, not per record.

This module never acknowledges anything itself, and it never drops a row
silently: a failed commit is reported to every submitter in the batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from telemd.errors import ErrorCode
from telemd.hostinfo import HostInfo

log = logging.getLogger("telemd.spool")

SPOOL_FILE = "spool.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hosts (
    id INTEGER PRIMARY KEY,
    machine_id TEXT NOT NULL,
    arch TEXT NOT NULL,
    host_type TEXT NOT NULL,
    build TEXT NOT NULL,
    kernel_version TEXT NOT NULL,
    system_name TEXT NOT NULL,
    board_name TEXT NOT NULL,
    cpu_model TEXT NOT NULL,
    bios_version TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    UNIQUE (machine_id, arch, host_type, build, kernel_version, system_name,
            board_name, cpu_model, bios_version, boot_id)
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,            -- arrival order: delivery takes the oldest first
    record_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    creation_timestamp INTEGER NOT NULL,
    classification TEXT NOT NULL,
    severity INTEGER NOT NULL,
    payload_format_version INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    host_id INTEGER NOT NULL REFERENCES hosts (id),
    sender_uid INTEGER NOT NULL,
    sender_pid INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
"""

_INSERT = (
    "INSERT INTO records (record_id, received_at, creation_timestamp, classification,"
    " severity, payload_format_version, event_id, payload, size, host_id, sender_uid,"
    " sender_pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_HOST_COLUMNS = (
    "machine_id, arch, host_type, build, kernel_version, system_name,"
    " board_name, cpu_model, bios_version, boot_id"
)

# One spooled record as intake builds it: every column of `records` in _INSERT
# order, except that the host is a (machine id, HostInfo) pair the writer
# turns into a `hosts` row id.
Entry = tuple[str, float, int, str, int, int, str, str, int, "HostKey", int, int]
HostKey = tuple[str, HostInfo]
# Called on the event loop with None once the entry is durable, else an error code.
Done = Callable[[str | None], None]

_STOP = object()
# Backpressure: intake stops reading from clients while this many entries
# wait for the writer, and resumes below LOW_WATER. Bounds memory under floods.
HIGH_WATER = 2048
LOW_WATER = 512


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the spool database with the settings every connection needs."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: in WAL mode a commit is durable only when the WAL is fsync'd.
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


_SQLITE_FULL = 13  # not exported by the sqlite3 module before Python 3.11


def _error_code(exc: sqlite3.Error) -> str:
    if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "full" in str(exc):
        return ErrorCode.SPOOL_FULL
    return ErrorCode.INTERNAL


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """The spool as the event loop sees it: submit rows, learn when they are durable."""

    def __init__(self, directory: str, *, max_bytes: int | None) -> None:
        self.directory = directory
        self.path = os.path.join(directory, SPOOL_FILE)
        self.max_bytes = max_bytes
        self.depth = 0
        # Payload bytes stored or on their way to disk, for the spool_max_size quota.
        self.bytes = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None
        self._host_ids: dict[HostKey, int] = {}
        self._idle = asyncio.Event()
        self._in_flight = 0
        # Called on the loop whenever a commit brings in_flight below LOW_WATER.
        self.on_drained: Callable[[], None] | None = None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create or recover the database, then start the writer thread."""
        self._loop = loop
        conn = connect(self.path)
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # The WAL file now exists: make its directory entry durable too.
        fsync_directory(self.directory)
        self.depth, self.bytes = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM records"
        ).fetchone()
        self._conn = conn
        self._idle.set()
        self._thread = threading.Thread(target=self._write_loop, name="spool-writer", daemon=True)
        self._thread.start()

    def reserve(self, size: int) -> bool:
        """Claim quota for a record of `size` bytes; False when the spool is full."""
        if self.max_bytes is not None and self.bytes + size > self.max_bytes:
            return False
        self.bytes += size
        return True

    def release(self, size: int) -> None:
        self.bytes -= size

    @property
    def congested(self) -> bool:
        return self._in_flight >= HIGH_WATER

    def submit(self, entry: Entry, done: Done) -> None:
        """Queue `entry` for the next commit; `done` runs on the loop afterwards."""
        self._in_flight += 1
        self._idle.clear()
        self._queue.put((entry, done))

    async def wait_idle(self) -> None:
        """Wait until every submitted entry has been committed or failed."""
        await self._idle.wait()

    def close(self) -> None:
        """Stop the writer after it has committed what is queued."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # The writer thread -------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            error = self._commit([entry for entry, _ in batch])
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._finish, batch, error)
            except RuntimeError:
                return  # the loop is gone: the process is exiting

    def _commit(self, entries: Sequence[Entry]) -> str | None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, [self._row(conn, entry) for entry in entries])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                self._host_ids.clear()  # ids inserted in this transaction are gone
                raise
        except sqlite3.Error as exc:
            log.error("spool commit of %d records failed: %s", len(entries), exc)
            return _error_code(exc)
        return None

    def _row(self, conn: sqlite3.Connection, entry: Entry) -> tuple[Any, ...]:
        host_key = entry[9]
        host_id = self._host_ids.get(host_key)
        if host_id is None:
            host_id = self._host_id(conn, host_key)
        return (*entry[:9], host_id, entry[10], entry[11])

    def _host_id(self, conn: sqlite3.Connection, host_key: HostKey) -> int:
        machine_id, info = host_key
        values = (
            machine_id,
            info.arch,
            info.host_type,
            info.build,
            info.kernel_version,
            info.system_name,
            info.board_name,
            info.cpu_model,
            info.bios_version,
            info.boot_id,
        )
        conn.execute(
            f"INSERT OR IGNORE INTO hosts ({_HOST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        where = " AND ".join(f"{column.strip()} = ?" for column in _HOST_COLUMNS.split(","))
        (host_id,) = conn.execute(f"SELECT id FROM hosts WHERE {where}", values).fetchone()
        self._host_ids[host_key] = host_id
        return int(host_id)

    # Back on the event loop ----------------------------------------------

    def _finish(self, batch: list[tuple[Entry, Done]], error: str | None) -> None:
        for entry, done in batch:
            if error is None:
                self.depth += 1
            else:
                self.release(entry[8])
            done(error)
        self._in_flight -= len(batch)
        if self._in_flight == 0:
            self._idle.set()
        if self._in_flight < LOW_WATER and self.on_drained is not None:
            self.on_drained()
