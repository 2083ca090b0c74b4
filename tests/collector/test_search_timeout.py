"""A search on PostgreSQL stops at its time limit and says how to narrow it.

Its index step reads every record holding all its words (8.7 s for a
phrase of two common words at 1,000,000 records); without a limit a read
token could hold the readers' connections that long per request. The
limit is shortened here and the search held behind another transaction's
lock, so that it is the limit, not the data, that ends it. SQLite's FTS5
yields a page's matches newest first and needs no limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from collector_proc import row

from telemd.collector.events.query import EventQuery, find_events
from telemd.collector.store import search
from telemd.collector.store.base import SearchTimeout, Store, open_engine
from telemd.collector.store.query import SELECT_COLUMNS, RecordQuery

NOW = 1_800_000_000.0
LIMIT_MS = 300
PAYLOAD = SELECT_COLUMNS.index("payload")


@pytest.fixture
def pg_store(
    new_db_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Store, str]]:
    monkeypatch.setattr(search, "SEARCH_TIME_LIMIT", f"SET LOCAL statement_timeout = {LIMIT_MS}")
    url = new_db_url("postgresql")
    store = Store(open_engine(url))
    store.migrate()
    yield store, url
    store.close()


@pytest.mark.parametrize("table", ["records", "events"])
def test_a_search_held_past_its_limit_is_stopped_with_a_reason(
    pg_store: tuple[Store, str], table: str
) -> None:
    store, url = pg_store
    store.write([[row(payload="usr bin signal")]], NOW)

    def run_search() -> object:
        if table == "records":
            return store.records(RecordQuery(q="usr signal"))
        return find_events(store, EventQuery(text="usr signal"), ())

    with psycopg.connect(url) as locker:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        began = time.monotonic()
        with pytest.raises(SearchTimeout, match=r"took longer than .* narrow it"):
            run_search()
        waited = time.monotonic() - began
        locker.rollback()
    assert LIMIT_MS / 1000 <= waited < 10
    # The lock gone, the same search answers, on the same pool of sessions.
    assert len(store.records(RecordQuery(q="usr signal"))) == 0
    found = store.records(RecordQuery(q="bin signal"))
    assert [r[PAYLOAD] for r in found] == ["usr bin signal"]


def test_a_read_without_words_has_no_search_limit(pg_store: tuple[Store, str]) -> None:
    """The limit is the search's: the same lock held longer than it does not stop a page."""
    store, url = pg_store
    store.write([[row(payload="usr bin signal")]], NOW)
    with psycopg.connect(url) as locker:
        locker.execute("LOCK TABLE records IN ACCESS EXCLUSIVE MODE")
        release_at = time.monotonic() + 2 * LIMIT_MS / 1000

        def release() -> None:
            time.sleep(max(0.0, release_at - time.monotonic()))
            locker.rollback()

        releaser = threading.Thread(target=release)
        releaser.start()
        try:
            rows = store.records(RecordQuery(classification="org.clearlinux/*"))
        finally:
            releaser.join()
    assert time.monotonic() >= release_at
    assert len(rows) == 1
