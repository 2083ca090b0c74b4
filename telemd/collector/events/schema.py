"""The events tables, as one migration of the store's schema.

A statement is shared text, or a mapping from engine name to text where the
engines differ: JSONB and a GIN full-text index on PostgreSQL, an FTS5 table
kept in step by triggers on SQLite. Pure data: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

Statement = str | Mapping[str, str]

# What PostgreSQL's full-text index holds: the words of an event's first
# 100,000 characters of JSON, keys and values. A tsvector holds at most 1 MB,
# which a 4 MiB event of distinct words would pass (and fail its insert); a
# search must say it the same way to use the index.
SEARCH_CHARS = 100_000
SEARCH_VECTOR = f"to_tsvector('simple', left(CAST(payload AS TEXT), {SEARCH_CHARS}))"
# Engine words, formatted into the shared statements.
JSON_COLUMN = {"sqlite": "TEXT", "postgresql": "JSONB"}
BLOB_COLUMN = {"sqlite": "BLOB", "postgresql": "BYTEA"}


# The columns an event has beside its id, digest and payload: written by
# events/store.py, read back by events/query.py.
EVENT_FIELDS = (
    "stream_id",
    "seq",
    "received_at",
    "source",
    "app",
    "event",
    "event_time",
    "context_id",
    "level",
)

EVENTS_MIGRATION: tuple[Statement, ...] = (
    # One row per request or connection that brought events; the headers
    # are kept without credentials (see telemd.collector.events.model).
    """CREATE TABLE streams (
        id {id_column},
        received_at DOUBLE PRECISION NOT NULL,
        protocol TEXT NOT NULL,
        remote TEXT NOT NULL,
        headers {json_column} NOT NULL
    )""",
    """CREATE TABLE events (
        id {id_column},
        stream_id BIGINT NOT NULL REFERENCES streams (id),
        seq INTEGER NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        source TEXT NOT NULL,
        app TEXT,
        event TEXT,
        event_time DOUBLE PRECISION NOT NULL,
        context_id TEXT,
        level TEXT,
        digest {blob_column} NOT NULL,
        payload {json_column} NOT NULL,
        UNIQUE (source, digest)
    )""",
    # One index per filter, each ending in id for newest-first pages.
    "CREATE INDEX events_context ON events (context_id, id)",
    "CREATE INDEX events_app ON events (app, id)",
    # A scenario's latest failures, for the Vrooli summary.
    "CREATE INDEX events_app_name ON events (app, event, id)",
    "CREATE INDEX events_name ON events (event, id)",
    "CREATE INDEX events_level ON events (level, id)",
    "CREATE INDEX events_source ON events (source, id)",
    "CREATE INDEX events_time ON events (event_time)",
    "CREATE INDEX events_received ON events (received_at)",
    "CREATE INDEX events_stream ON events (stream_id, seq)",
    # Counts per (source, app, event), kept with every insert and purge, so
    # that a summary reads a few rows whatever the number of events.
    """CREATE TABLE event_counts (
        source TEXT NOT NULL,
        app TEXT NOT NULL,
        event TEXT NOT NULL,
        total BIGINT NOT NULL,
        last_time DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (source, app, event)
    )""",
    {
        "sqlite": "CREATE VIRTUAL TABLE events_fts USING fts5("
        "payload, content='events', content_rowid='id')",
        "postgresql": f"CREATE INDEX events_search ON events USING GIN ({SEARCH_VECTOR})",
    },
    {
        "sqlite": "CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN "
        "INSERT INTO events_fts (events_fts, rowid, payload) "
        "VALUES ('delete', old.id, old.payload); END",
    },
)


# SQLite's full-text index takes new events in one statement per insert
# (events/store.py), several times faster than a trigger row by row; a
# trigger removes what any DELETE removes, so no path can leave stale words.
INDEX_NEW_EVENTS = {
    "sqlite": "INSERT INTO events_fts (rowid, payload) "
    "SELECT id, payload FROM events WHERE id BETWEEN ? AND ?",
}


def statement_text(statement: Statement, engine: str, id_column: str) -> str | None:
    """The SQL of one migration statement for the engine named; None: nothing to run there."""
    text = statement if isinstance(statement, str) else statement.get(engine)
    if text is None:
        return None
    return text.format(
        id_column=id_column,
        json_column=JSON_COLUMN.get(engine, "TEXT"),
        blob_column=BLOB_COLUMN.get(engine, "BLOB"),
    )
