"""The journal: what became of every record, and the retained payloads.

One SQLite database under `state_dir`. The spool writer appends to it in the
same transaction that removes records from the spool (the database is
ATTACHed to the spool's connection), so a record leaves the spool only with
its fate written. Reading (`query`) is for `telemctl journal`; it opens the
file read-only and never writes.

In WAL mode a transaction over two attached databases is atomic for each
database but not across them: a crash between the two commits can leave a
delivered record in the spool (it is sent again; the collector drops the
repeated record id) or journal a fate twice. It never loses a record.

Intake writes two more kinds of entry: `refused`, a frame it could not take
(its reason in `message`, the sender's uid, and in `count` how many such
refusals one entry stands for), and `normalised`, a record taken once a
value was changed (what was changed, the original value included).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

JOURNAL_FILE = "journal.sqlite"
FATES = ("delivered", "rejected", "dropped", "expired", "kept-local", "refused", "normalised")

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal.entries (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    fate TEXT NOT NULL,
    record_id TEXT NOT NULL,
    classification TEXT NOT NULL,
    severity INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    boot_id TEXT NOT NULL,
    creation_timestamp INTEGER NOT NULL,
    http_status INTEGER,
    attempts INTEGER NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    sender_uid INTEGER,
    count INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS journal.retained (
    record_id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    payload TEXT NOT NULL
);
"""

_COLUMNS = (
    "time, fate, record_id, classification, severity, event_id, boot_id,"
    " creation_timestamp, http_status, attempts, message, sender_uid, count"
)
# Columns added since the first release, with their definitions: a journal
# written by an older daemon gets them when it is next opened.
_ADDED_COLUMNS = (
    ("sender_uid", "INTEGER"),
    ("count", "INTEGER NOT NULL DEFAULT 1"),
)

# Rows arrive as one JSON array of arrays (see `append`).
_INSERT_ENTRIES = (
    f"INSERT INTO journal.entries ({_COLUMNS}) SELECT "
    + ", ".join(f"json_extract(value, '$[{index}]')" for index in range(_COLUMNS.count(",") + 1))
    + " FROM json_each(?)"
)


@dataclass(frozen=True, slots=True)
class Entry:
    time: float
    fate: str
    record_id: str
    classification: str
    severity: int
    event_id: str
    boot_id: str
    creation_timestamp: int
    http_status: int | None
    attempts: int
    message: str
    sender_uid: int | None = None
    count: int = 1  # refusals this entry stands for
    payload: str | None = None  # the retained copy, when asked for and kept


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables of the journal ATTACHed as `journal`, or bring an older one up to date."""
    conn.executescript(SCHEMA)
    present = {row[1] for row in conn.execute("PRAGMA journal.table_info(entries)")}
    for column, definition in _ADDED_COLUMNS:
        if column not in present:
            conn.execute(f"ALTER TABLE journal.entries ADD COLUMN {column} {definition}")


def append(
    conn: sqlite3.Connection,
    entries: Sequence[Entry],
    *,
    max_entries: int,
    retained: Sequence[tuple[str, float, str]] = (),
    retention_count: int = 0,
    prune: bool = True,
) -> None:
    """Write fates (and retained payloads) inside the caller's transaction.

    With `prune`, the oldest entries beyond `max_entries` are deleted.
    Callers that append often prune every max_entries/10 appends, so the
    journal holds at most max_entries plus a tenth.
    """
    # One statement for the whole batch: executemany would step once per row,
    # and every step gives up and retakes the GIL the event loop is using.
    conn.execute(
        _INSERT_ENTRIES,
        (
            json.dumps(
                [
                    (
                        e.time,
                        e.fate,
                        e.record_id,
                        e.classification,
                        e.severity,
                        e.event_id,
                        e.boot_id,
                        e.creation_timestamp,
                        e.http_status,
                        e.attempts,
                        e.message,
                        e.sender_uid,
                        e.count,
                    )
                    for e in entries
                ]
            ),
        ),
    )
    if prune:
        first, last = conn.execute(
            "SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM journal.entries"
        ).fetchone()
        if last - first + 1 > max_entries:
            conn.execute("DELETE FROM journal.entries WHERE id <= ?", (last - max_entries,))
    if retained:
        conn.executemany(
            "INSERT OR REPLACE INTO journal.retained (record_id, time, payload) VALUES (?, ?, ?)",
            retained,
        )
        conn.execute(
            "DELETE FROM journal.retained WHERE rowid NOT IN"
            " (SELECT rowid FROM journal.retained ORDER BY time DESC, rowid DESC LIMIT ?)",
            (retention_count,),
        )


@dataclass(frozen=True, slots=True)
class Filter:
    classification: str | None = None  # exact, or a prefix when it ends in "/*"
    record_id: str | None = None
    event_id: str | None = None
    boot_id: str | None = None
    fate: str | None = None
    since: float | None = None
    until: float | None = None
    after_id: int | None = None  # for --follow: entries newer than this one
    limit: int | None = None  # the newest `limit` entries


def query(path: str, where: Filter, *, with_payload: bool = False) -> list[tuple[int, Entry]]:
    """Journal entries matching `where`, oldest first, with their ids."""
    clauses, args = _clauses(where)
    columns = ", ".join(f"e.{column.strip()}" for column in _COLUMNS.split(","))
    sql = f"SELECT e.id, {columns}, " + ("r.payload" if with_payload else "NULL")
    sql += " FROM entries e" + (
        " LEFT JOIN retained r ON r.record_id = e.record_id" if with_payload else ""
    )
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY e.id DESC"
    if where.limit is not None:
        sql += f" LIMIT {int(where.limit)}"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(sql, args).fetchall()
    finally:
        conn.close()
    return [(row[0], Entry(*row[1:])) for row in reversed(rows)]


def _clauses(where: Filter) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    if where.classification is not None:
        if where.classification.endswith("/*"):
            clauses.append("substr(e.classification, 1, ?) = ?")
            prefix = where.classification[:-1]
            args += [len(prefix), prefix]
        else:
            clauses.append("e.classification = ?")
            args.append(where.classification)
    for column, value in (
        ("record_id", where.record_id),
        ("event_id", where.event_id),
        ("boot_id", where.boot_id),
        ("fate", where.fate),
    ):
        if value is not None:
            clauses.append(f"e.{column} = ?")
            args.append(value)
    if where.since is not None:
        clauses.append("e.time >= ?")
        args.append(where.since)
    if where.until is not None:
        clauses.append("e.time <= ?")
        args.append(where.until)
    if where.after_id is not None:
        clauses.append("e.id > ?")
        args.append(where.after_id)
    return clauses, args
