"""Events in the store: streams, batch inserts, duplicates, retention, counts.

Writes take the writer thread (`Writer.call`), like records, so ids grow in
commit order and keyset pages never skip an event. A stream is stored first
and its events after, in as many batches as it takes (`store_events` is
called again with the next `first_seq` as a stream goes on).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telemd.collector import json_codec
from telemd.collector.events.model import Event
from telemd.collector.events.schema import EVENT_FIELDS, INDEX_NEW_EVENTS

if TYPE_CHECKING:
    from telemd.collector.store.base import Session, Store

_COLUMNS = (*EVENT_FIELDS, "digest", "payload")
_WIDTH = len(_COLUMNS)
# Where a row's fields the counts need sit among its values.
_SOURCE, _APP, _NAME, _TIME = (
    _COLUMNS.index(column) for column in ("source", "app", "event", "event_time")
)
# 90 rows of 11 values stay below every SQLite's limit on bound parameters (999
# before 3.32); one statement a row would cost a round trip through the driver each.
ROWS_PER_STATEMENT = 90
MAX_ID = 2**63 - 1
_JSON_PARAM = {"postgresql": "CAST(? AS jsonb)"}


def _json_param(engine: str) -> str:
    return _JSON_PARAM.get(engine, "?")


@functools.lru_cache(maxsize=2 * ROWS_PER_STATEMENT)
def _insert_sql(engine: str, rows: int) -> str:
    """INSERT of `rows` events, skipping those stored before, returning the ids of the new."""
    values = "(" + ", ".join([*["?"] * (_WIDTH - 1), _json_param(engine)]) + ")"
    return (
        f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES "
        + ", ".join([values] * rows)
        + " ON CONFLICT (source, digest) DO NOTHING RETURNING id"
    )


def insert_stream(
    session: Session,
    engine: str,
    protocol: str,
    remote: str,
    headers: Mapping[str, str],
    now: float,
) -> int:
    rows = session.fetch(
        "INSERT INTO streams (received_at, protocol, remote, headers) "
        f"VALUES (?, ?, ?, {_json_param(engine)}) RETURNING id",
        (now, protocol, remote, json_codec.dumps(dict(headers)).decode()),
    )
    return int(rows[0][0])


def insert_events(
    session: Session,
    engine: str,
    stream_id: int,
    events: Sequence[Event],
    now: float,
    first_seq: int = 0,
) -> int:
    """Insert the events not stored before; return how many were new."""
    return insert_event_runs(session, engine, [(stream_id, first_seq, events)], now)


def insert_event_runs(
    session: Session,
    engine: str,
    runs: Sequence[tuple[int, int, Sequence[Event]]],
    now: float,
) -> int:
    """Insert several streams' runs of events (stream id, first seq, events) at once.

    Return how many were new. The full-text index and the counts take one
    statement set for all the runs.
    """
    seen: set[tuple[str, bytes]] = set()
    params: list[object] = []  # a row's values after another's, as the INSERT binds them
    for stream_id, first_seq, events in runs:
        for seq, event in enumerate(events, start=first_seq):
            key = (event.source, event.digest)
            if key in seen:
                continue
            seen.add(key)
            params += (
                stream_id,
                seq,
                now,
                event.source,
                event.app,
                event.name,
                event.time,
                event.context_id,
                event.level,
                event.digest,
                event.payload.decode(),
            )
    added: dict[tuple[str, str, str], tuple[int, float]] = {}
    low, high = MAX_ID, 0
    step = ROWS_PER_STATEMENT * _WIDTH
    for start in range(0, len(params), step):
        chunk = params[start : start + step]
        rows = len(chunk) // _WIDTH
        ids = [id_ for (id_,) in session.fetch(_insert_sql(engine, rows), chunk)]
        if not ids:
            continue
        low, high = min(low, *ids), max(high, *ids)
        fields: Iterable[Any]
        if len(ids) == rows:  # all new, the common case: count them from what was sent
            fields = zip(
                chunk[_SOURCE::_WIDTH], chunk[_APP::_WIDTH], chunk[_NAME::_WIDTH],
                chunk[_TIME::_WIDTH], strict=True,
            )  # fmt: skip
        else:
            fields = session.fetch(
                "SELECT source, app, event, event_time FROM events "
                f"WHERE id IN ({', '.join('?' * len(ids))})",
                ids,
            )
        for source, app, name, moment in fields:
            key3 = (source, app or "", name or "")
            total, last = added.get(key3, (0, moment))
            added[key3] = (total + 1, max(last, moment))
    if added and engine in INDEX_NEW_EVENTS:
        # The ids between are all this transaction's: it holds the write lock.
        session.execute(INDEX_NEW_EVENTS[engine], (low, high))
    for (source, app, name), (total, last) in added.items():
        session.execute(
            "INSERT INTO event_counts (source, app, event, total, last_time) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (source, app, event) DO UPDATE SET "
            "total = event_counts.total + excluded.total, last_time = CASE "
            "WHEN excluded.last_time > event_counts.last_time THEN excluded.last_time "
            "ELSE event_counts.last_time END",
            (source, app, name, total, last),
        )
    return sum(total for total, _ in added.values())


def purge_events(session: Session, before: float) -> int:
    """Delete the events received before `before`, their counts and their empty streams."""
    gone = session.fetch(
        "SELECT source, coalesce(app, ''), coalesce(event, ''), count(*) FROM events "
        "WHERE received_at < ? GROUP BY source, coalesce(app, ''), coalesce(event, '')",
        (before,),
    )
    if not gone:
        return 0
    deleted = session.execute("DELETE FROM events WHERE received_at < ?", (before,))
    for source, app, name, total in gone:
        session.execute(
            "UPDATE event_counts SET total = total - ? WHERE source = ? AND app = ? AND event = ?",
            (total, source, app, name),
        )
    session.execute("DELETE FROM event_counts WHERE total <= 0")
    session.execute(
        "DELETE FROM streams WHERE received_at < ? AND NOT EXISTS "
        "(SELECT 1 FROM events WHERE events.stream_id = streams.id)",
        (before,),
    )
    return deleted


# -- the API the protocols call (on the writer thread) -----------------------


def store_stream(
    store: Store, protocol: str, remote: str, headers: Mapping[str, str], now: float
) -> int:
    """Open a stream; return its id, for `store_events`."""
    with store.transaction() as session:
        return insert_stream(session, store.engine.name, protocol, remote, headers, now)


def store_events(
    store: Store, stream_id: int, events: Sequence[Event], now: float, first_seq: int = 0
) -> int:
    """Store a stream's next events in one transaction; return how many were new."""
    with store.transaction() as session:
        return insert_events(session, store.engine.name, stream_id, events, now, first_seq)


@dataclass(frozen=True, slots=True)
class StreamPart:
    """A stream's next events; a stream without an id yet is opened with them."""

    protocol: str
    remote: str
    headers: Mapping[str, str]
    stream_id: int | None
    first_seq: int
    events: Sequence[Event]


def store_parts(store: Store, parts: Sequence[StreamPart], now: float) -> list[int]:
    """Several streams' next events in one transaction; return each part's stream id."""
    engine = store.engine.name
    with store.transaction() as session:
        ids = [
            part.stream_id
            if part.stream_id is not None
            else insert_stream(session, engine, part.protocol, part.remote, part.headers, now)
            for part in parts
        ]
        runs = [(id_, part.first_seq, part.events) for id_, part in zip(ids, parts, strict=True)]
        insert_event_runs(session, engine, runs, now)
    return ids


def store_batch(
    store: Store,
    protocol: str,
    remote: str,
    headers: Mapping[str, str],
    events: Sequence[Event],
    now: float,
) -> tuple[int, int]:
    """A stream and all its events in one transaction: (stream id, events new)."""
    with store.transaction() as session:
        stream_id = insert_stream(session, store.engine.name, protocol, remote, headers, now)
        return stream_id, insert_events(session, store.engine.name, stream_id, events, now)
