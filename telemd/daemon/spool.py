"""The durable queue between intake and delivery: one SQLite database in WAL mode.

One writer thread owns every write. Intake submits rows from the event loop;
the writer takes everything queued, inserts it in one transaction and commits
(WAL + synchronous=FULL: the commit is fsync'd), then reports back to the
loop. Frames that arrive while a commit runs go into the next transaction:
group commit, so durability costs one fsync per batch, not per record.

Delivery's changes (removing records with their journal entries, counting
failed attempts, expiring old records) are jobs run by the same writer in
the same transactions; delivery reads the oldest records through a second,
read-only connection.

This module never acknowledges anything itself, and it never drops a row
silently: every submitter hears how its row or job fared. A batch that
fails is committed again change by change, so that one bad row (or a job
with a defect) is refused alone and its neighbours are stored. The writer
thread outlives every Exception; if it ends all the same, the event loop
fails what is queued and calls `on_writer_gone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

from telemd import journal
from telemd.daemon.transport import Outgoing
from telemd.errors import ErrorCode
from telemd.hostinfo import HostInfo
from telemd.record import RECORD_FORMAT_VERSION

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

# Up to this many rows commit as one multi-row INSERT (12 values a row stays
# below SQLite's oldest limit of 999 bound values).
_ROWS_PER_STATEMENT = 64
_INSERT_ROWS = [
    _INSERT + ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" * (count - 1)
    for count in range(1, _ROWS_PER_STATEMENT + 1)
]

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
# A job runs in the writer thread inside a transaction; its result goes to
# its callback on the event loop with the error code (None on success).
Job = Callable[[sqlite3.Connection], Any]
JobDone = Callable[[str | None, Any], None]
# What one entry or job came to: (error code or None, the job's result).
Outcome = tuple[str | None, Any]
_FAILED: Outcome = (ErrorCode.INTERNAL, None)

_SELECT_OUTGOING = (
    "SELECT r.seq, r.record_id, r.received_at, r.creation_timestamp, r.classification,"
    " r.severity, r.payload_format_version, r.event_id, r.payload, r.size, r.attempts,"
    " h.machine_id, h.arch, h.host_type, h.build, h.kernel_version, h.system_name,"
    " h.board_name, h.cpu_model, h.bios_version, h.boot_id"
    " FROM records r JOIN hosts h ON h.id = r.host_id"
)

_STOP = object()
# Backpressure: intake stops reading from clients while this many entries
# wait for the writer, and resumes below LOW_WATER. Bounds memory under floods.
HIGH_WATER = 2048
LOW_WATER = 512


def _insert_row(entry: Entry, host_id: int) -> tuple[Any, ...]:
    """`entry` as _INSERT's values: its host key replaced by the `hosts` row id."""
    return (*entry[:9], host_id, entry[10], entry[11])


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


def _attach_journal(conn: sqlite3.Connection, journal_path: str) -> None:
    """Attach the journal as `journal`, durable like the spool, its tables created."""
    conn.execute("ATTACH DATABASE ? AS journal", (journal_path,))
    conn.execute("PRAGMA journal.journal_mode=WAL")
    conn.execute("PRAGMA journal.synchronous=FULL")
    journal.prepare(conn)


_SQLITE_FULL = 13  # not exported by the sqlite3 module before Python 3.11


def _failure_code(exc: Exception) -> str:
    if isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "full" in str(exc)
    ):
        return ErrorCode.SPOOL_FULL
    return ErrorCode.INTERNAL


def _log_failure(exc: Exception, changes: int) -> None:
    """One line for SQLite's own errors, the traceback for anything else."""
    if isinstance(exc, sqlite3.Error):
        log.error("spool commit of %d changes failed: %s", changes, exc)
    else:
        log.error("spool commit of %d changes failed", changes, exc_info=exc)


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
        self._reader: sqlite3.Connection | None = None
        self._host_ids: dict[HostKey, int] = {}
        self._appended = 0  # journal entries since the journal was last pruned
        self._idle = asyncio.Event()
        self._in_flight = 0
        # Called on the loop whenever a commit brings in_flight below LOW_WATER.
        self.on_drained: Callable[[], None] | None = None
        # Called on the loop if the writer thread ends without being asked to.
        self.on_writer_gone: Callable[[], None] | None = None
        self.writer_failure: str | None = None

    def open(self, loop: asyncio.AbstractEventLoop, journal_path: str) -> None:
        """Create or recover the spool and the journal, then start the writer thread."""
        self._loop = loop
        conn = connect(self.path)
        conn.executescript(_SCHEMA)
        # Write only when it changes: a spool on a full file system must still open.
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        _attach_journal(conn, journal_path)
        # The WAL files now exist: make their directory entries durable too.
        fsync_directory(self.directory)
        fsync_directory(os.path.dirname(journal_path) or ".")
        self.depth, self.bytes = conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM records"
        ).fetchone()
        self._conn = conn
        self._reader = connect(self.path)
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

    @property
    def writer_state(self) -> str:
        """`running`, `stopped` (closed, or not yet opened) or `failed: <why>`."""
        if self.writer_failure is not None:
            return f"failed: {self.writer_failure}"
        return "running" if self._thread is not None else "stopped"

    def submit(self, entry: Entry, done: Done) -> None:
        """Queue `entry` for the next commit; `done` runs on the loop afterwards."""
        self._enqueue((entry, done))

    def run(self, job: Job, done: JobDone) -> None:
        """Queue `job` for the writer's next transaction."""
        self._enqueue((job, done))

    def _enqueue(self, item: tuple[Any, Any]) -> None:
        self._in_flight += 1
        self._idle.clear()
        if self.writer_failure is not None and self._thread is None:
            # No writer will take it: fail it now rather than never.
            assert self._loop is not None
            self._loop.call_soon(self._finish, [item], [_FAILED])
            return
        self._queue.put(item)

    async def wait_idle(self) -> None:
        """Wait until every submitted entry and job has been committed or failed."""
        await self._idle.wait()

    def close(self) -> None:
        """Stop the writer after it has committed what is queued."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        for conn in (self._conn, self._reader):
            if conn is not None:
                conn.close()
        self._conn = self._reader = None

    # Reading, on the event loop -----------------------------------------

    def fetch(self, after_seq: int, limit: int) -> list[Outgoing]:
        """The oldest records after `after_seq`, ready to post."""
        assert self._reader is not None
        rows = self._reader.execute(
            _SELECT_OUTGOING + " WHERE r.seq > ? ORDER BY r.seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [_outgoing(row) for row in rows]

    def oldest_received(self) -> float | None:
        assert self._reader is not None
        (oldest,) = self._reader.execute("SELECT min(received_at) FROM records").fetchone()
        return None if oldest is None else float(oldest)

    # Delivery's jobs ---------------------------------------------------------

    def remove(
        self,
        fates: list[tuple[Outgoing, journal.Entry]],
        *,
        journal_max: int,
        retention_count: int | None,
        done: Callable[[str | None], None],
    ) -> None:
        """Take records out of the spool, writing their fates in the same transaction."""

        def job(conn: sqlite3.Connection) -> None:
            self._remove(conn, fates, journal_max, retention_count)

        def finished(error: str | None, _: Any) -> None:
            if error is None:
                self.depth -= len(fates)
                self.release(sum(record.size for record, _ in fates))
            done(error)

        self.run(job, finished)

    def note_failure(self, seqs: list[int], message: str) -> None:
        """Count a failed attempt on these records (for the journal's attempts)."""

        def job(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE records SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
                [(message, seq) for seq in seqs],
            )

        self.run(job, lambda error, _: None)

    def drop_older(
        self,
        cutoff: float,
        now: float,
        *,
        fate: str,
        message: str,
        exclude: frozenset[int],
        journal_max: int,
        retention_count: int | None,
        done: Callable[[list[Outgoing]], None],
    ) -> None:
        """Remove records received before `cutoff` (expiry; a purge passes infinity)."""

        def job(conn: sqlite3.Connection) -> list[Outgoing]:
            return drop_records(
                conn,
                cutoff,
                now,
                fate=fate,
                message=message,
                exclude=exclude,
                remove=lambda fates: self._remove(conn, fates, journal_max, retention_count),
            )

        def finished(error: str | None, removed: list[Outgoing] | None) -> None:
            if error is None and removed:
                self.depth -= len(removed)
                self.release(sum(record.size for record in removed))
                log.info("%d records %s: %s", len(removed), fate, message)
            done(removed if error is None and removed else [])

        self.run(job, finished)

    def _remove(
        self,
        conn: sqlite3.Connection,
        fates: list[tuple[Outgoing, journal.Entry]],
        journal_max: int,
        retention_count: int | None,
    ) -> None:
        """In the writer: journal the fates, keep payloads, delete the records."""
        self._appended += len(fates)
        prune = self._appended >= max(1, journal_max // 10)
        if prune:
            self._appended = 0
        _journal_and_delete(conn, fates, journal_max, retention_count, prune=prune)

    # The writer thread -------------------------------------------------

    def _write_loop(self) -> None:
        batch: list[tuple[Any, Any]] = []
        try:
            while self._write_next(batch):
                batch = []
        except BaseException as exc:
            # _write_next answers for every Exception; only a BaseException
            # (SystemExit from a job, say) ends the thread. The loop learns of
            # it, fails what is queued and stops the daemon.
            self.writer_failure = f"{type(exc).__name__}: {exc}"
            log.critical("the spool writer stopped", exc_info=exc)
            self._post(self._writer_gone, batch)

    def _write_next(self, batch: list[tuple[Any, Any]]) -> bool:
        """Commit everything queued (filling `batch`); False once asked to stop."""
        item = self._queue.get()
        if item is _STOP:
            return False
        batch.append(item)
        more = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                more = False
                break
            batch.append(item)
        try:
            outcomes = self._commit(batch)
        except Exception:  # a defect of the writer itself: this batch fails, not the writer
            log.exception("spool writer failed on a batch of %d changes", len(batch))
            outcomes = [_FAILED] * len(batch)
        self._post(self._finish, batch, outcomes)
        return more

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        # The loop is gone only when the process is exiting.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _commit(self, batch: list[tuple[Any, Any]]) -> list[Outcome]:
        """Commit a batch; if it fails, each of its changes alone, so that
        one bad row or job is refused and its neighbours are stored."""
        try:
            return [(None, result) for result in self._commit_together(batch)]
        except Exception as exc:
            code = _failure_code(exc)
            # A full disk is no one row's fault: retrying each would only fail again.
            if len(batch) == 1 or code == ErrorCode.SPOOL_FULL:
                _log_failure(exc, len(batch))
                return [(code, None)] * len(batch)
            log.warning(
                "spool commit of %d changes failed (%s: %s); committing them one by one",
                len(batch),
                type(exc).__name__,
                exc,
            )
        return [self._commit_alone(item) for item in batch]

    def _commit_alone(self, item: tuple[Any, Any]) -> Outcome:
        try:
            [result] = self._commit_together([item])
        except Exception as exc:
            _log_failure(exc, 1)
            return _failure_code(exc), None
        return None, result

    def _commit_together(self, batch: list[tuple[Any, Any]]) -> list[Any]:
        """One transaction for the batch, or an exception and nothing written."""
        conn = self._conn
        assert conn is not None
        simple = self._simple_rows(batch)
        if simple is not None:
            # In autocommit mode the statement is its own transaction.
            conn.execute(_INSERT_ROWS[len(simple) - 1], [v for row in simple for v in row])
            return [None] * len(simple)
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows: list[tuple[Any, ...]] = []
            for work, _ in batch:
                if isinstance(work, tuple):
                    rows.append(self._row(conn, work))
                    results.append(None)
                    continue
                if rows:  # keep the order of inserts and jobs
                    conn.executemany(_INSERT, rows)
                    rows = []
                results.append(work(conn))
            if rows:
                conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except BaseException:
            # SQLITE_FULL may roll the transaction back by itself; a second
            # ROLLBACK would then replace the real error with "no transaction".
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._host_ids.clear()  # ids inserted in this transaction are gone
            raise
        return results

    def _simple_rows(self, batch: list[tuple[Any, Any]]) -> list[tuple[Any, ...]] | None:
        """The rows of a batch that can commit as one multi-row INSERT: at most
        _ROWS_PER_STATEMENT entries, no jobs, every host already known.

        Every statement releases the GIL and must take it back from the event
        loop; one statement instead of BEGIN, a step per row and COMMIT made
        8 clients that connect, send and wait for each OK about 13% faster."""
        if len(batch) > _ROWS_PER_STATEMENT:
            return None
        rows = []
        host_ids = self._host_ids
        for work, _ in batch:
            if not isinstance(work, tuple):
                return None
            host_id = host_ids.get(work[9])
            if host_id is None:
                return None
            rows.append(_insert_row(work, host_id))
        return rows

    def _row(self, conn: sqlite3.Connection, entry: Entry) -> tuple[Any, ...]:
        host_key = entry[9]
        host_id = self._host_ids.get(host_key)
        if host_id is None:
            host_id = self._host_id(conn, host_key)
        return _insert_row(entry, host_id)

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

    def _finish(self, batch: list[tuple[Any, Any]], outcomes: list[Outcome]) -> None:
        for (work, done), (error, result) in zip(batch, outcomes, strict=True):
            # A defect in one callback must not leave the others unanswered.
            try:
                if isinstance(work, tuple):
                    if error is None:
                        self.depth += 1
                    else:
                        self.release(work[8])
                    done(error)
                else:
                    done(error, result)
            except Exception:
                log.exception("a spool callback failed")
        self._in_flight -= len(batch)
        if self._in_flight == 0:
            self._idle.set()
        if self._in_flight < LOW_WATER and self.on_drained is not None:
            self.on_drained()

    def _writer_gone(self, batch: list[tuple[Any, Any]]) -> None:
        """On the loop, once the writer thread has ended unasked: fail its batch
        and everything queued, refuse what comes, tell the daemon."""
        self._thread = None
        pending = list(batch)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                pending.append(item)
        self._finish(pending, [_FAILED] * len(pending))
        if self.on_writer_gone is not None:
            self.on_writer_gone()


def drop_records(
    conn: sqlite3.Connection,
    cutoff: float,
    now: float,
    *,
    fate: str,
    message: str,
    exclude: frozenset[int],
    remove: Callable[[list[tuple[Outgoing, journal.Entry]]], None],
) -> list[Outgoing]:
    """Journal and delete records received before `cutoff`, but for `exclude`.

    Records in a request right now are excluded: the answer settles them.
    """
    rows = conn.execute(
        _SELECT_OUTGOING + " WHERE r.received_at < ? ORDER BY r.seq", (cutoff,)
    ).fetchall()
    dropped = [record for record in map(_outgoing, rows) if record.seq not in exclude]
    remove([(record, fate_entry(record, fate, now, None, message)) for record in dropped])
    return dropped


def purge_offline(spool_dir: str, journal_path: str, journal_max: int, now: float) -> int:
    """Purge a spool no daemon is running on: every record journaled as dropped."""
    path = os.path.join(spool_dir, SPOOL_FILE)
    if not os.path.exists(path):
        return 0
    conn = connect(path)
    try:
        _attach_journal(conn, journal_path)
        conn.execute("BEGIN IMMEDIATE")
        dropped = drop_records(
            conn,
            float("inf"),
            now,
            fate="dropped",
            message="purged by telemctl",
            exclude=frozenset(),
            remove=lambda fates: _journal_and_delete(conn, fates, journal_max, None, prune=True),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return len(dropped)


def _journal_and_delete(
    conn: sqlite3.Connection,
    fates: list[tuple[Outgoing, journal.Entry]],
    journal_max: int,
    retention_count: int | None,
    *,
    prune: bool,
) -> None:
    retained = (
        [(record.record_id, entry.time, record.payload) for record, entry in fates]
        if retention_count
        else []
    )
    journal.append(
        conn,
        [entry for _, entry in fates],
        max_entries=journal_max,
        retained=retained,
        retention_count=retention_count or 0,
        prune=prune,
    )
    conn.execute(
        "DELETE FROM records WHERE seq IN (SELECT value FROM json_each(?))",
        (json.dumps([record.seq for record, _ in fates]),),
    )


def fate_entry(
    record: Outgoing, fate: str, now: float, http_status: int | None, message: str
) -> journal.Entry:
    headers = record.headers
    return journal.Entry(
        time=now,
        fate=fate,
        record_id=record.record_id,
        classification=headers["classification"],
        severity=int(headers["severity"]),
        event_id=headers["event_id"],
        boot_id=record.boot_id,
        creation_timestamp=int(headers["creation_timestamp"]),
        http_status=http_status,
        attempts=record.attempts + (1 if http_status is not None else 0),
        message=message,
    )


def waiting_records(conn: sqlite3.Connection) -> Iterator[Outgoing]:
    """Every record in the spool, oldest first, as delivery would post it."""
    for row in conn.execute(_SELECT_OUTGOING + " ORDER BY r.seq"):
        yield _outgoing(row)


def _outgoing(row: tuple[Any, ...]) -> Outgoing:
    (
        seq,
        record_id,
        received_at,
        created,
        classification,
        severity,
        version,
        event_id,
        payload,
        size,
        attempts,
        machine_id,
        arch,
        host_type,
        build,
        kernel,
        system_name,
        board_name,
        cpu_model,
        bios_version,
        boot_id,
    ) = row
    headers = {
        "record_format_version": str(RECORD_FORMAT_VERSION),
        "classification": classification,
        "severity": str(severity),
        "machine_id": machine_id,
        "creation_timestamp": str(created),
        "arch": arch,
        "host_type": host_type,
        "build": build,
        "kernel_version": kernel,
        "payload_format_version": str(version),
        "system_name": system_name,
        "board_name": board_name,
        "cpu_model": cpu_model,
        "bios_version": bios_version,
        "event_id": event_id,
    }
    return Outgoing(seq, record_id, headers, payload, received_at, attempts, size, boot_id)
