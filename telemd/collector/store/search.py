"""Record filters into SQL, and the indexes that keep them fast, per engine.

The two engines say the same thing in their own words:
- a classification pattern is a GLOB on SQLite (case-sensitive, and its
  literal prefix runs on the classification index) and a LIKE on PostgreSQL;
- payload search finds the words of `q` in a row, in that order, ignoring
  case and whatever lies between words (`parse_header()` finds
  "PARSE header"): an FTS5 table on SQLite (its unicode61 words; new
  records enter it as store/fulltext.py says), and on PostgreSQL a stored tsvector of the same words
  (`payload_words`) with a GIN index on it. Words, not substrings: an index
  of character trigrams finds any substring, but cost ingest five times what
  a word index costs (see docs/performance.md).
- a page of a search costs what the page needs, not what the table holds:
  FTS5 yields its matches newest first; PostgreSQL's planner cannot tell a
  common word from a rare one (it guesses from statistics that may be
  missing or stale), so the store decides by trying (`_select_words`).

Every value a client gives travels as a bound parameter, and the characters
that mean something to GLOB, LIKE or FTS5 are escaped, so a filter matches
text and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from telemd.collector.store.query import EXACT_FILTERS, SELECT_COLUMNS, WILDCARD, RecordQuery
from telemd.collector.store.rollups import CLASS_TOTAL_TABLE

if TYPE_CHECKING:
    from telemd.collector.store.base import Session

T = TypeVar("T")

# Ids grow in commit order and received_at is read just before the commit,
# so the two agree but for the writers of several processes interleaving
# and their clocks' skew: well under this many seconds, the margin kept when
# a time range becomes a range of ids.
ID_ORDER_SLACK = 300.0
# A classification pattern matching more classifications than this is one
# query, not one per classification.
MAX_EXPANDED = 64


@dataclass(frozen=True, slots=True)
class Where:
    """A WHERE clause ('' for none) and its parameters, in order."""

    sql: str
    params: tuple[object, ...]


def glob_pattern(pattern: str) -> str:
    """A classification pattern as a SQLite GLOB: only WILDCARD stays special."""
    escaped = {"?": "[?]", "[": "[[]"}
    return WILDCARD.join(
        "".join(escaped.get(ch, ch) for ch in part) for part in pattern.split(WILDCARD)
    )


def like_literal(text: str) -> str:
    """Text that LIKE (backslash being its escape) matches as it is."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(pattern: str) -> str:
    """A classification pattern as a LIKE: WILDCARD becomes %."""
    return "%".join(like_literal(part) for part in pattern.split(WILDCARD))


def fts_phrase(text: str) -> str:
    """Text as one FTS5 string: its words, in order, as a phrase."""
    return '"' + text.replace('"', '""') + '"'


# PostgreSQL's text-search parser knows URLs, paths, versions and more; this
# leaves it plain words, the ones FTS5's unicode61 tokenizer sees.
PG_WORDS = "to_tsvector('simple', regexp_replace({text}, '[^[:alnum:]]+', ' ', 'g'))"
PG_QUERY = "phraseto_tsquery('simple', regexp_replace({text}, '[^[:alnum:]]+', ' ', 'g'))"
# PG_WORDS of the payload, stored: telling whether a row holds a phrase then
# reads its words instead of parsing its payload again (under 1 us against
# 50-100 us a row), which a walk down the ids and the GIN index's recheck
# of a phrase both do for every row they consider.
WORDS_COLUMN = "payload_words"
# A page of `limit` matches is first looked for among the newest
# `limit * WALK_ROWS_PER_MATCH` rows (see _select_words).
WALK_ROWS_PER_MATCH = 100
# The index's step of a search on PostgreSQL reads every record holding all
# its words: a phrase of two words each in most records but never side by
# side reads nearly the table (8.7 s at 1,000,000 records). It is stopped
# here, so that no reader holds a connection of the pool longer; the client
# hears SearchTimeout (400) and how to narrow the search.
SEARCH_TIMEOUT_MS = 10_000
SEARCH_TIME_LIMIT = f"SET LOCAL statement_timeout = {SEARCH_TIMEOUT_MS}"


def record_where(query: RecordQuery, engine: str) -> Where:
    clauses: list[str] = []
    params: list[object] = []
    for name in EXACT_FILTERS:
        value = getattr(query, name)
        if value is not None:
            clauses.append(f"{name} = ?")
            params.append(value)
    if query.severity_min is not None:
        clauses.append("severity >= ?")
        params.append(query.severity_min)
    if query.classification is not None:
        if WILDCARD not in query.classification:
            clauses.append("classification = ?")
            params.append(query.classification)
        elif engine == "sqlite":
            clauses.append("classification GLOB ?")
            params.append(glob_pattern(query.classification))
        else:
            clauses.append("classification LIKE ?")
            params.append(like_pattern(query.classification))
    # select_records walks the time range as a range of ids (id_range): the
    # times only filter the rows at its ends. As plain column conditions
    # PostgreSQL multiplied their selectivity by the ids', which say the same,
    # estimated 281 rows for 83,750, and sorted them all from a bitmap of
    # both indexes (400 ms at 10,000,000 records, against 9 walking the ids).
    if query.since is not None:
        clauses.append("received_at + 0 >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("received_at + 0 < ?")
        params.append(query.until)
    if query.q is not None:
        if engine == "sqlite":
            clauses.append("id IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)")
            params.append(fts_phrase(query.q))
        else:
            clauses.append(f"{WORDS_COLUMN} @@ {PG_QUERY.format(text='?')}")
            params.append(query.q)
    if query.before is not None:
        clauses.append("id < ?")
        params.append(query.before)
    if query.after is not None:
        clauses.append("id > ?")
        params.append(query.after)
    return Where(" WHERE " + " AND ".join(clauses) if clauses else "", tuple(params))


def id_range(session: Session, query: RecordQuery) -> RecordQuery:
    """`query` with its time range also as a range of ids, the key every page walks.

    The time filters stay as they are: the ids only let the walk start and
    stop near the range, instead of at the newest record and the oldest.
    """
    before, after = query.before, query.after
    if query.until is not None:
        rows = session.fetch(
            "SELECT id FROM records WHERE received_at >= ? ORDER BY received_at LIMIT 1",
            (query.until + ID_ORDER_SLACK,),
        )
        if rows:
            before = min(before, rows[0][0]) if before is not None else rows[0][0]
    if query.since is not None:
        rows = session.fetch(
            "SELECT id FROM records WHERE received_at < ? ORDER BY received_at DESC LIMIT 1",
            (query.since - ID_ORDER_SLACK,),
        )
        if rows:
            after = max(after, rows[0][0]) if after is not None else rows[0][0]
    return replace(query, before=before, after=after)


def select_records(session: Session, query: RecordQuery, engine: str) -> list[tuple[object, ...]]:
    """SELECT_COLUMNS rows matching `query`, newest first.

    A classification pattern becomes the classifications it matches (the
    rollups know them all), each an index walk of at most `limit` rows,
    merged: newest first among a few classifications costs the same at any
    size, where one walk of the pattern's range would sort all its records.
    """
    query = id_range(session, query)
    if query.classification is not None and WILDCARD in query.classification:
        names = classifications_matching(session, query.classification, engine)
        if len(names) <= MAX_EXPANDED:
            rows: list[tuple[object, ...]] = []
            for name in names:
                rows += _select(session, replace(query, classification=name), engine)
            rows.sort(key=lambda row: int(str(row[0])), reverse=True)
            return rows[: query.limit]
    return _select(session, query, engine)


def classifications_matching(session: Session, pattern: str, engine: str) -> list[str]:
    where = record_where(RecordQuery(classification=pattern), engine)
    return [
        str(row[0])
        for row in session.fetch(
            f"SELECT DISTINCT classification FROM {CLASS_TOTAL_TABLE}{where.sql}", where.params
        )
    ]


def _select(session: Session, query: RecordQuery, engine: str) -> list[tuple[object, ...]]:
    if query.q is not None and engine == "sqlite":
        # The FTS5 table drives: it yields matches newest first and the walk
        # stops at the page's end, where `id IN (matches)` would collect
        # every match of a common word first.
        where = record_where(replace(query, q=None), engine)
        columns = ", ".join(f"records.{name}" for name in SELECT_COLUMNS)
        conditions = where.sql.replace(" WHERE ", " AND ", 1)
        return session.fetch(
            f"SELECT {columns} FROM records_fts JOIN records ON records.id = records_fts.rowid "
            f"WHERE records_fts MATCH ?{conditions} ORDER BY records_fts.rowid DESC LIMIT ?",
            (fts_phrase(query.q), *where.params, query.limit),
        )
    if query.q is not None:
        return within_search_limit(session, lambda: _select_words(session, query))
    where = record_where(query, engine)
    return session.fetch(
        f"SELECT {', '.join(SELECT_COLUMNS)} FROM records{where.sql} ORDER BY id DESC LIMIT ?",
        (*where.params, query.limit),
    )


def _select_words(session: Session, query: RecordQuery) -> list[tuple[object, ...]]:
    """PostgreSQL: a page of `q`'s matches, newest first, whatever the word's frequency.

    A word in many records fills its page within the newest rows: walking
    the ids down and testing each row's stored words stops after the page.
    A rare word would send that walk through the whole table; the GIN index
    finds its few matches, which are then sorted. So the walk goes first,
    bounded to WALK_ROWS_PER_MATCH rows per row of the page, and only a walk
    that did not fill the page gives way to the index, with the planner kept
    from walking again (index and sequential scans off): its estimate of a
    phrase's frequency, from statistics that may be stale or missing, chose
    the unbounded walk for `func_17(` (17 s at 1,000,000 records). Runs
    inside within_search_limit.
    """
    columns = ", ".join(SELECT_COLUMNS)
    others = record_where(replace(query, q=None), "postgresql")
    rows = session.fetch(
        f"SELECT {columns} FROM (SELECT {columns}, {WORDS_COLUMN} FROM records{others.sql} "
        f"ORDER BY id DESC LIMIT ?) AS newest "
        f"WHERE {WORDS_COLUMN} @@ {PG_QUERY.format(text='?')} ORDER BY id DESC LIMIT ?",
        (*others.params, query.limit * WALK_ROWS_PER_MATCH, query.q, query.limit),
    )
    if len(rows) == query.limit:
        return rows
    where = record_where(query, "postgresql")
    session.execute("SET LOCAL enable_indexscan = off")
    session.execute("SET LOCAL enable_seqscan = off")
    return session.fetch(
        f"SELECT {columns} FROM records{where.sql} ORDER BY id DESC LIMIT ?",
        (*where.params, query.limit),
    )


def within_search_limit(session: Session, search: Callable[[], T]) -> T:
    """Run `search` in a transaction of its own whose statements stop at SEARCH_TIMEOUT_MS
    (the driver's error becomes SearchTimeout in the Store); the planner settings it
    makes end with it."""
    session.begin()
    try:
        session.execute(SEARCH_TIME_LIMIT)
        found = search()
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return found


# Migration 3: the search filters' indexes and the payload's full-text index.
# A new index is built from the rows already stored.
SEARCH_INDEXES = (
    "CREATE INDEX records_event ON records (event_id)",
    # The summary's newest severe records per classification.
    "CREATE INDEX records_class_severity ON records (classification, severity, id)",
)
SQLITE_FULL_TEXT = (
    "CREATE VIRTUAL TABLE records_fts USING fts5(payload, content='records', content_rowid='id')",
    "CREATE TRIGGER records_fts_insert AFTER INSERT ON records BEGIN "
    "INSERT INTO records_fts (rowid, payload) VALUES (new.id, new.payload); END",
    "CREATE TRIGGER records_fts_delete AFTER DELETE ON records BEGIN "
    "INSERT INTO records_fts (records_fts, rowid, payload) "
    "VALUES ('delete', old.id, old.payload); END",
    "INSERT INTO records_fts (records_fts) VALUES ('rebuild')",
)
POSTGRES_FULL_TEXT = (
    f"CREATE INDEX records_payload_words ON records USING gin ({PG_WORDS.format(text='payload')})",
)


def search_migration(engine: str) -> tuple[str, ...]:
    full_text = SQLITE_FULL_TEXT if engine == "sqlite" else POSTGRES_FULL_TEXT
    return (*SEARCH_INDEXES, *full_text)


# Migration 8: PostgreSQL's words of each payload, stored and indexed. The
# expression index goes first, so that the table's rewrite does not rebuild
# it; the rewrite parses every payload once, with the table locked (see
# docs/deployment.md for how long).
STORED_WORDS_MIGRATION: tuple[dict[str, str], ...] = (
    {"postgresql": "DROP INDEX records_payload_words"},
    {
        "postgresql": f"ALTER TABLE records ADD COLUMN {WORDS_COLUMN} tsvector "
        f"GENERATED ALWAYS AS ({PG_WORDS.format(text='payload')}) STORED"
    },
    {"postgresql": f"CREATE INDEX records_words ON records USING gin ({WORDS_COLUMN})"},
)
