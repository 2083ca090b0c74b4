"""Record search on both engines: patterns, time ranges, full text, exact filters."""

from __future__ import annotations

from typing import Any

import pytest
from collector_proc import CLEAR_TID, new_id, row

from telemd.collector.ingest import records as ingest
from telemd.collector.ingest.records import FieldError
from telemd.collector.store.base import Store
from telemd.collector.store.query import SELECT_COLUMNS, RecordQuery, parse_query
from telemd.collector.store.search import glob_pattern, like_pattern

RULES = ingest.Rules(frozenset({CLEAR_TID}), 32768)
NOW = 1_800_000_000.0


def found(store: Store, **filters: Any) -> list[str]:
    """The payloads of the records a query finds, newest first."""
    rows = store.records(RecordQuery(**filters))
    return [r[SELECT_COLUMNS.index("payload")] for r in rows]


def test_classification_patterns(store: Store) -> None:
    store.write(
        [
            [
                row(classification="org.clearlinux/crash/a", payload="crash a"),
                row(classification="org.clearlinux/crash/b", payload="crash b"),
                row(classification="org.clearlinux/crashes/c", payload="crashes c"),
                row(classification="ORG.CLEARLINUX/crash/d", payload="upper d"),
                row(classification="org.clearlinux/hello/world", payload="hello"),
            ]
        ],
        NOW,
    )
    assert sorted(found(store, classification="org.clearlinux/crash/*")) == ["crash a", "crash b"]
    assert sorted(found(store, classification="org.clearlinux/crash*/*")) == [
        "crash a",
        "crash b",
        "crashes c",
    ]
    assert found(store, classification="*/hello/*") == ["hello"]
    assert found(store, classification="org.clearlinux/crash/a") == ["crash a"]
    assert len(found(store, classification="*")) == 5


def test_pattern_metacharacters_are_literal(store: Store) -> None:
    store.write(
        [
            [
                row(classification="org.test/a_b/x", payload="underscore"),
                row(classification="org.test/aXb/x", payload="letter"),
            ]
        ],
        NOW,
    )
    assert found(store, classification="org.test/a_b/*") == ["underscore"]
    assert found(store, classification="org.test/a%/*") == []
    assert found(store, classification="org.test/a?b/*") == []
    assert found(store, classification="org.test/a[X]b/*") == []


def test_escapes() -> None:
    assert glob_pattern("a?[b]*") == "a[?][[]b]*"
    assert like_pattern("a_%\\*") == "a\\_\\%\\\\%"


def test_severity_min_and_exact_filters(store: Store) -> None:
    event = new_id()
    store.write(
        [
            [
                row(severity="1", payload="one", event_id=event),
                row(severity="3", payload="three", system_name="clear-linux-os"),
                row(severity="4", payload="four", host_type="Dell|XPS|1", event_id=event),
            ]
        ],
        NOW,
    )
    assert sorted(found(store, severity_min=3)) == ["four", "three"]
    assert sorted(found(store, event_id=event)) == ["four", "one"]
    assert found(store, system_name="clear-linux-os") == ["three"]
    assert found(store, host_type="Dell|XPS|1") == ["four"]
    assert found(store, event_id=event, severity_min=2) == ["four"]


def test_time_range_is_half_open(store: Store) -> None:
    for hours in range(4):
        store.write([[row(payload=f"h{hours}")]], NOW + hours * 3600)
    assert found(store, since=NOW + 3600, until=NOW + 3 * 3600) == ["h2", "h1"]
    assert found(store, until=NOW) == []
    assert found(store, since=NOW + 3 * 3600) == ["h3"]


def test_full_text_finds_words_in_order(store: Store) -> None:
    store.write(
        [
            [
                row(payload="Backtrace (TID 1):\n#0 parse_header() - [/usr/lib/libfoo.so.1]"),
                row(payload="BUG: kernel NULL pointer dereference, address: 0000000000000008"),
                row(payload='quote " and 100% of_it'),
            ]
        ],
        NOW,
    )
    assert len(found(store, q="libfoo")) == 1
    assert len(found(store, q="libfoo.so.1")) == 1
    assert len(found(store, q="/usr/lib/libfoo")) == 1
    assert len(found(store, q="PARSE_HEADER()")) == 1  # case and punctuation aside
    assert len(found(store, q="null pointer")) == 1
    assert found(store, q="pointer null") == []  # words in order
    assert found(store, q="ointer") == []  # words, not parts of words
    assert found(store, q='quote "') == ['quote " and 100% of_it']
    assert found(store, q="100% of") == ['quote " and 100% of_it']
    assert found(store, q="NEAR(quote it)") == []  # FTS5 syntax is text, not a query
    assert found(store, q="quote OR hello") == []
    assert found(store, q="libfoo", classification="other/*") == []


def test_full_text_forgets_purged_records(store: Store) -> None:
    from telemd.collector.store.base import Retention

    store.write([[row(payload="old needle")]], NOW - 10 * 86400)
    store.write([[row(payload="new needle")]], NOW)
    assert store.purge(Retention(days=5), NOW) == 1
    assert found(store, q="needle") == ["new needle"]


def test_keyset_pages_through_a_search(store: Store) -> None:
    store.write([[row(payload=f"needle {i}") for i in range(7)]], NOW)
    store.write([[row(payload="hay")]], NOW)
    pages: list[str] = []
    before = None
    while True:
        rows = store.records(RecordQuery(q="needle", limit=3, before=before))
        pages += [r[SELECT_COLUMNS.index("payload")] for r in rows]
        if len(rows) < 3:
            break
        before = rows[-1][0]
    assert sorted(pages) == sorted(f"needle {i}" for i in range(7))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"severity_min": "5"}, "severity_min"),
        ({"since": "yesterday"}, "since"),
        ({"until": "-1"}, "until"),
        ({"event_id": "ABC"}, "event_id"),
        ({"q": "!?-"}, "q"),
    ],
)
def test_bad_search_values_name_their_parameter(params: dict[str, str], field: str) -> None:
    with pytest.raises(FieldError) as caught:
        parse_query(params, NOW)
    assert caught.value.field == field


def test_since_takes_the_latest_lower_bound() -> None:
    query = parse_query({"since": str(NOW - 10), "created_in_sec": "3600"}, NOW)
    assert query.since == NOW - 10
    query = parse_query({"since": "1970-01-01T00:00:00Z", "created_in_sec": "60"}, NOW)
    assert query.since == NOW - 60


def test_time_ranges_hold_records_a_little_out_of_id_order(store: Store) -> None:
    # Two processes' writers interleave: a later id may carry an earlier time.
    for hours in range(4):
        store.write([[row(payload=f"h{hours}")]], NOW + hours * 3600)
    store.write([[row(payload="late")]], NOW + 3 * 3600 - 100)
    store.write([[row(payload="early")]], NOW + 3 * 3600 + 100)
    store.write([[row(payload="h4")]], NOW + 4 * 3600)
    assert found(store, since=NOW + 3 * 3600 - 150, until=NOW + 3 * 3600) == ["late"]
    assert found(store, since=NOW + 3 * 3600, until=NOW + 3 * 3600 + 1) == ["h3"]
    assert found(store, since=NOW + 3 * 3600 + 1) == ["h4", "early"]
    assert found(store, since=NOW + 3 * 3600, until=NOW + 5 * 3600) == ["h4", "early", "h3"]
    assert found(store, until=NOW + 3600) == ["h0"]


def test_a_pattern_merges_its_classifications_newest_first(store: Store) -> None:
    for n in range(12):
        store.write([[row(classification=f"org.test/m{n % 3}/x", payload=f"p{n}")]], NOW + n)
    store.write([[row(classification="org.other/m0/x", payload="other")]], NOW + 20)
    assert found(store, classification="org.test/*", limit=5) == [
        f"p{n}" for n in (11, 10, 9, 8, 7)
    ]
    newest = store.records(RecordQuery(classification="org.test/*", limit=5))
    after = found(store, classification="org.test/*", before=newest[-1][0], since=NOW + 2)
    assert after == [f"p{n}" for n in (6, 5, 4, 3, 2)]
