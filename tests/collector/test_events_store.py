"""telemd.collector.events.store on SQLite and PostgreSQL: streams, duplicates, retention."""

from __future__ import annotations

from typing import Any

import pytest

from telemd.collector import json_codec
from telemd.collector.events.model import EventError, make_event, stored_headers
from telemd.collector.events.query import (
    RECENT_FAILURES_SQL,
    SUMMARY_COUNTS_SQL,
    EventQuery,
    events_sql,
)
from telemd.collector.events.store import store_batch, store_events, store_stream
from telemd.collector.store.base import Retention, Store

NOW = 1_800_000_000.0
DAY = 86400


def shuttle_event(phase: str, context: str = "c1", **extra: str) -> dict[str, Any]:
    return {
        "app": "shuttle",
        "timestamp": "2026-12-07T10:00:00.123456789Z",
        "properties": {"phase": phase, "shuttle.contextID": context, **extra},
    }


def as_event(obj: dict[str, Any], index: int = 0) -> Any:
    return make_event(
        "shuttle",
        obj,
        received_at=NOW,
        index=index,
        app=obj["app"],
        timestamp=obj["timestamp"],
        context_id=obj["properties"]["shuttle.contextID"],
    )


def fetch(store: Store, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    with store.reading() as session:
        return session.fetch(sql, params)


def test_a_stream_keeps_its_headers_without_credentials(store: Store) -> None:
    headers = stored_headers(
        {"Authorization": "Bearer s3cret", "Cookie": "a=b", "User-Agent": "Go-http-client/1.1"},
        "/api/v1/events/tok123456",
        "app=x&token=hunter2",
        path_token="tok123456",
    )
    stream = store_stream(store, "events", "127.0.0.1", headers, NOW)
    (kept,) = fetch(store, "SELECT CAST(headers AS TEXT) FROM streams WHERE id = ?", (stream,))[0]
    text = str(kept)
    assert "s3cret" not in text and "a=b" not in text
    assert "tok123456" not in text and "hunter2" not in text
    assert json_codec.loads(text)["user-agent"] == "Go-http-client/1.1"


def test_events_are_stored_whole_in_order_with_their_fields(store: Store) -> None:
    events = [as_event(shuttle_event(p), i) for i, p in enumerate(("start", "end"))]
    stream, new = store_batch(store, "shuttle", "127.0.0.1", {}, events, NOW)
    assert new == 2
    rows = fetch(
        store,
        "SELECT seq, source, app, context_id, event_time, CAST(payload AS TEXT) FROM events "
        "WHERE stream_id = ? ORDER BY id",
        (stream,),
    )
    assert [r[0] for r in rows] == [0, 1]
    assert {r[1:4] for r in rows} == {("shuttle", "shuttle", "c1")}
    assert rows[0][4] == pytest.approx(1796637600.123456)
    assert json_codec.loads(rows[1][5]) == shuttle_event("end")


def test_a_file_posted_twice_is_stored_once(store: Store) -> None:
    events = [as_event(shuttle_event(p), i) for i, p in enumerate(("start", "end", "start"))]
    assert store_batch(store, "shuttle", "::1", {}, events, NOW)[1] == 2
    assert store_batch(store, "shuttle", "::1", {}, events, NOW + 1)[1] == 0
    assert fetch(store, "SELECT count(*) FROM events")[0][0] == 2
    assert fetch(store, "SELECT total FROM event_counts")[0][0] == 2


def test_a_batch_partly_stored_before_counts_only_its_new_events(store: Store) -> None:
    def named(name: str, run: int) -> Any:
        event = shuttle_event("start", run=str(run))
        return make_event("shuttle", event, received_at=NOW, app="shuttle", name=name)

    store_batch(store, "shuttle", "::1", {}, [named("a", 0), named("b", 1)], NOW)
    # 200 events over three statements, the first and last holding one stored before.
    again = [named("a", 0), *[named("c", i) for i in range(2, 200)], named("b", 1)]
    assert store_batch(store, "shuttle", "::1", {}, again, NOW)[1] == 198
    counts = fetch(store, "SELECT event, total FROM event_counts ORDER BY event")
    assert counts == [("a", 1), ("b", 1), ("c", 198)]
    assert fetch(store, "SELECT count(*) FROM events")[0][0] == 200


def test_a_stream_grows_in_several_batches(store: Store) -> None:
    stream = store_stream(store, "jsonl", "::1", {}, NOW)
    first = [as_event(shuttle_event("start", run=str(i))) for i in range(3)]
    second = [as_event(shuttle_event("end", run=str(i))) for i in range(2)]
    assert store_events(store, stream, first, NOW) == 3
    assert store_events(store, stream, second, NOW, first_seq=3) == 2
    seqs = fetch(store, "SELECT seq FROM events WHERE stream_id = ? ORDER BY id", (stream,))
    assert [s for (s,) in seqs] == [0, 1, 2, 3, 4]


def test_retention_purges_old_events_counts_and_streams(store: Store) -> None:
    store_batch(store, "shuttle", "::1", {}, [as_event(shuttle_event("old"))], NOW - 10 * DAY)
    store_batch(store, "shuttle", "::1", {}, [as_event(shuttle_event("new"))], NOW)
    assert store.purge(Retention(days=5), NOW) == 1
    assert fetch(store, "SELECT count(*) FROM events")[0][0] == 1
    assert fetch(store, "SELECT count(*) FROM streams")[0][0] == 1
    assert fetch(store, "SELECT total FROM event_counts")[0][0] == 1


def test_the_nul_character_is_refused_on_every_engine() -> None:
    with pytest.raises(EventError, match="NUL"):
        make_event("events", {"a": "x\u0000y"}, received_at=NOW)


@pytest.fixture
def varied(store: Store) -> Store:
    """3,000 Vrooli events over 30 scenarios and 10 names, with statistics taken."""
    names = ["app_start", "ready", "crash", "api_unreachable", *[f"step_{i}" for i in range(6)]]
    events = [
        make_event(
            "vrooli",
            {"n": i},
            received_at=NOW,
            app=f"scenario-{i % 30}",
            name=names[i % len(names)],
            context_id=f"deploy-{i // 10}",
        )
        for i in range(3000)
    ]
    store_batch(store, "vrooli", "::1", {}, events, NOW)
    with store.reading() as session:
        session.execute("ANALYZE")
    return store


def plan(store: Store, sql: str, params: list[object]) -> str:
    """The engine's plan for `sql`, as text; PostgreSQL is told to avoid scans it can."""
    with store.reading() as session:
        if store.engine.name == "postgresql":
            session.execute("SET enable_seqscan = off")
            rows = session.fetch("EXPLAIN " + sql, params)
            session.execute("RESET enable_seqscan")
            return "\n".join(str(r[0]) for r in rows)
        return "\n".join(str(r[-1]) for r in session.fetch("EXPLAIN QUERY PLAN " + sql, params))


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (EventQuery(context_id="deploy-7"), "events_context"),
        (EventQuery(app="scenario-3", name="crash"), "events_app"),
        (EventQuery(text="disk"), "events_"),
    ],
)
def test_filters_use_their_index(varied: Store, query: EventQuery, index: str) -> None:
    sql, params = events_sql(query, varied.engine.name, ())
    shown = plan(varied, sql, params)
    assert index in shown, shown
    assert "SCAN events " not in shown + " " and "Seq Scan on events" not in shown, shown


def test_the_vrooli_summary_reads_counts_and_an_index(varied: Store) -> None:
    counts = plan(varied, SUMMARY_COUNTS_SQL, ["vrooli"])
    assert "event_counts" in counts and "Seq Scan" not in counts, counts
    if varied.engine.name == "sqlite":
        assert "SCAN event_counts" not in counts, counts
    recent = plan(varied, RECENT_FAILURES_SQL, ["scenario-3", "crash", "vrooli", 10])
    assert "events_app_name" in recent, recent
