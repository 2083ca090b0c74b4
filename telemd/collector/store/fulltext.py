"""The write side of the payloads' full-text index: how new records enter it.

SQLite's FTS5 table (store/search.py makes it) takes a transaction's new
records in one INSERT ... SELECT, run by `Store.write` after the records;
a row trigger would run FTS5's insert once per record, which costs half as
much again per record (docs/performance.md). The delete trigger stays, so
that no DELETE can leave words of a record that is gone. PostgreSQL's GIN
index follows its table by itself: nothing to run there.
"""

from __future__ import annotations

# Every id from the transaction's first new record on is new in it: the
# writer holds the database's write lock and ids only grow.
INDEX_NEW_RECORDS: dict[str, str] = {
    "sqlite": "INSERT INTO records_fts (rowid, payload) "
    "SELECT id, payload FROM records WHERE id >= ?",
}

# Migration 8: the statement above replaces the row trigger.
MIGRATION = ({"sqlite": "DROP TRIGGER records_fts_insert"},)
