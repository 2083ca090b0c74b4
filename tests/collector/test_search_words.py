"""Full-text pages against a brute-force match, on both engines.

Whichever way the store finds a page (PostgreSQL walks the newest rows for
a common word and asks its GIN index for a rare one), keyset pages and the
whole-result export must return exactly the records that hold the words,
newest first. The oracle here reads every payload in Python.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from collector_proc import row

from telemd.collector.store import export
from telemd.collector.store.base import Store, open_engine
from telemd.collector.store.query import SELECT_COLUMNS, RecordQuery
from telemd.collector.store.search import WALK_ROWS_PER_MATCH, select_records

NOW = 1_800_000_000.0
PAYLOAD = SELECT_COLUMNS.index("payload")
RECEIVED = SELECT_COLUMNS.index("received_at")
CLASSIFICATION = SELECT_COLUMNS.index("classification")
RECORDS = 1200
# Words and phrases as a maintainer types them, punctuation included.
SEARCHES = (
    "common",  # in 3 records of 5: a page fills within the newest rows
    "needle",  # in 1 of 150: the walk of a small page does not fill it
    "zebrafish_overflow",  # in 3, the oldest among them
    "func_17(",  # a phrase, among func_117( and func_1703() and 17 func
    "FUNC--17",
    "overflow zebrafish",  # the words of a phrase out of order
    "nowhere",  # in no record
)


def payload_of(n: int, rng: random.Random) -> str:
    parts = [f"Process: /usr/bin/prog{n % 7}", f"#0 func_{rng.choice((117, 1703, 5))}()"]
    if rng.random() < 0.6:
        parts.append("common frame")
    if n % 150 == 7:
        parts.append("a needle here")
    if n in (0, 500, 1100):
        parts.append("zebrafish_overflow")
    if n % 90 == 3:
        parts.append(rng.choice(("#1 func_17() - [/usr/lib64/libfoo.so.1]", "FUNC 17", "17 func")))
    return "\n".join(parts)


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def holds(payload: str, q: str) -> bool:
    """True when the words of `q` stand in `payload` in that order, one after another."""
    have, want = words(payload), words(q)
    return any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1))


@pytest.fixture(scope="module")
def filled(engine: str, new_db_url: Callable[[str], str]) -> Any:
    """A store of RECORDS records, and the oracle's list of them, newest first.

    Each is (id, classification, payload, received_at).
    """
    store = Store(open_engine(new_db_url(engine)))
    store.migrate()
    rng = random.Random(17)
    for first in range(0, RECORDS, 200):
        batch = [
            row(
                payload=payload_of(n, rng),
                classification=f"org.test/{'ab'[n % 2]}/crash",
            )
            for n in range(first, first + 200)
        ]
        store.write([batch], NOW + first)
    everything = store.records(RecordQuery(limit=1000)) + store.records(
        RecordQuery(limit=1000, before=store.records(RecordQuery(limit=1000))[-1][0])
    )
    assert len(everything) == RECORDS
    yield store, [(r[0], r[CLASSIFICATION], r[PAYLOAD], r[RECEIVED]) for r in everything]
    store.close()


def paged(store: Store, query: RecordQuery) -> list[int]:
    """Every id of `query`'s result, read page by page as a client does."""
    ids: list[int] = []
    while True:
        rows = store.records(query)
        ids += [int(r[0]) for r in rows]
        if len(rows) < query.limit:
            return ids
        query = RecordQuery(**{**_fields(query), "before": rows[-1][0]})


def _fields(query: RecordQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in query.__slots__}


@pytest.mark.parametrize("q", SEARCHES)
@pytest.mark.parametrize("limit", [1, 3, 50])
def test_pages_hold_exactly_the_matches(filled: Any, q: str, limit: int) -> None:
    store, oracle = filled
    expected = [id_ for id_, _, payload, _ in oracle if holds(payload, q)]
    assert paged(store, RecordQuery(q=q, limit=limit)) == expected


@pytest.mark.parametrize("q", ["common", "needle", "func_17("])
def test_words_with_other_filters(filled: Any, q: str) -> None:
    store, oracle = filled
    exact = [i for i, c, p, _ in oracle if c == "org.test/a/crash" and holds(p, q)]
    assert paged(store, RecordQuery(q=q, classification="org.test/a/crash", limit=2)) == exact
    pattern = [i for i, c, p, _ in oracle if c.startswith("org.test/") and holds(p, q)]
    assert paged(store, RecordQuery(q=q, classification="org.test/*", limit=4)) == pattern
    since, until = NOW + 200, NOW + 1000
    middle = [i for i, _, p, t in oracle if since <= t < until and holds(p, q)]
    assert paged(store, RecordQuery(q=q, since=since, until=until, limit=3)) == middle


@pytest.mark.parametrize("q", SEARCHES)
def test_export_holds_exactly_the_matches(filled: Any, q: str) -> None:
    store, oracle = filled
    ids: list[int] = []
    page: RecordQuery | None = export.first_page(RecordQuery(q=q))
    while page is not None:
        rows = store.records(page)
        ids += [int(r[0]) for r in rows]
        page = export.next_page(page, rows)
    assert ids == [id_ for id_, _, payload, _ in oracle if holds(payload, q)]


def test_the_page_boundary_of_the_walk(filled: Any) -> None:
    # The walk fills a page of `common` within its rows: the page ends where
    # the oracle's does, and the next page starts right after it.
    store, oracle = filled
    expected = [id_ for id_, _, payload, _ in oracle if holds(payload, "common")]
    limit = 3
    first = [int(r[0]) for r in store.records(RecordQuery(q="common", limit=limit))]
    assert first == expected[:limit]
    after = store.records(RecordQuery(q="common", limit=limit, before=first[-1]))
    assert [int(r[0]) for r in after] == expected[limit : 2 * limit]
    assert len(oracle) > limit * WALK_ROWS_PER_MATCH


def rows_read(session: Any) -> int:
    """Rows of `records` this PostgreSQL session's scans have read so far."""
    session.fetch("SELECT pg_stat_force_next_flush()")
    [(seq, fetched)] = session.fetch(
        "SELECT seq_tup_read, coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables "
        "WHERE relname = 'records'"
    )
    return int(seq) + int(fetched)


def test_stale_statistics_do_not_send_a_page_through_the_table(
    engine: str, new_db_url: Callable[[str], str]
) -> None:
    """A page reads rows in proportion to the page, whatever ANALYZE last saw.

    The planner alone picks its plan from statistics: told a word is
    everywhere (it was, then those records went), it walks the whole table
    for a word now in 3 old records; told a word is nowhere, it reads every
    match of a word now in every record before keeping a page of them.
    """
    if engine != "postgresql":
        pytest.skip("plans from statistics are PostgreSQL's; FTS5 yields matches newest first")
    store = Store(open_engine(new_db_url(engine)))
    try:
        store.migrate()
        _stale_statistics(store)
    finally:
        store.close()


def _stale_statistics(store: Store) -> None:
    with store.reading() as session:
        if int(session.fetch("SHOW server_version_num")[0][0]) < 150000:
            pytest.skip("counting a session's rows read needs pg_stat_force_next_flush (15+)")
    limit, table = 10, 3000
    with store.transaction() as session:
        session.execute("ALTER TABLE records SET (autovacuum_enabled = false)")
    store.write([[row(payload=f"needle {n}") for n in range(3)]], NOW)
    store.write([[row(payload="needle gone") for _ in range(table)]], NOW + 1)
    with store.transaction() as session:
        session.execute("ANALYZE records")
        session.execute("DELETE FROM records WHERE payload = 'needle gone'")
    store.write([[row(payload="hay now") for _ in range(table)]], NOW + 2)

    with store.reading() as session:
        before = rows_read(session)
        found = select_records(session, RecordQuery(q="needle", limit=limit), "postgresql")
        assert sorted(r[PAYLOAD] for r in found) == [f"needle {n}" for n in range(3)]
        assert rows_read(session) - before <= limit * WALK_ROWS_PER_MATCH + 3

        before = rows_read(session)
        found = select_records(session, RecordQuery(q="now", limit=limit), "postgresql")
        assert len(found) == limit
        assert rows_read(session) - before <= limit
