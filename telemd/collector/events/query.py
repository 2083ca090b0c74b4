"""Reading events: filters, keyset pages, full-text search, the Vrooli summary.

Shared by GET /api/v1/events and `telemd-collector events`. Filters come in
as checked strings (`params.read_query` or the command line) and become an
`EventQuery`; every filter has its index (events/schema.py). Pages are keyset
on the event's id: newest first with `before`, oldest first with `after`
(what a live tail asks for).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from telemd.collector import json_codec
from telemd.collector.events.model import ERROR_LEVELS
from telemd.collector.events.protocols import VROOLI, iso_time
from telemd.collector.events.schema import EVENT_FIELDS, SEARCH_VECTOR
from telemd.collector.ingest.records import FieldError
from telemd.collector.server.params import EVENT_FILTERS, integer, unix_time
from telemd.collector.store.search import within_search_limit

if TYPE_CHECKING:
    from telemd.collector.store.base import Session, Store

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_ID = 2**63 - 1
RECENT_FAILURES = 10
_COLUMNS = ("id", *EVENT_FIELDS, "CAST(payload AS TEXT)")
# PostgreSQL walks the ids for a page of `q` before it asks the index (see
# _search_postgres), each event it tests parsed into words again (10-30 us):
# first this many events per row of the page,
FIRST_WALK = 10
# then, if the first walk's matches say the page fills within this many
# (with half as many again to spare), on to there.
LONGEST_WALK = 100


@dataclass(frozen=True, slots=True)
class EventQuery:
    source: str | None = None
    app: str | None = None  # also Vrooli's scenario
    name: str | None = None
    context_id: str | None = None
    level: str | None = None  # "error": failure events too
    since: float | None = None  # on the event's own time
    until: float | None = None
    text: str | None = None
    limit: int = DEFAULT_LIMIT
    before: int | None = None
    after: int | None = None


def parse_event_query(params: Mapping[str, str]) -> EventQuery:
    """An EventQuery from parameter texts; FieldError names the bad one."""
    unknown = sorted(set(params) - set(EVENT_FILTERS))
    if unknown:
        raise FieldError(unknown[0], f"is not a filter; use one of {', '.join(EVENT_FILTERS)}")
    given = {name: value for name, value in params.items() if value}
    if "app" in given and "scenario" in given and given["app"] != given["scenario"]:
        raise FieldError("scenario", "names the app too; give app or scenario, not both")
    if "before" in given and "after" in given:
        raise FieldError("after", "pages the other way from before; give one of them")
    return EventQuery(
        source=given.get("source"),
        app=given.get("app") or given.get("scenario"),
        name=given.get("event"),
        context_id=given.get("context_id"),
        level=given["level"].lower() if "level" in given else None,
        since=unix_time("since", given["since"]) if "since" in given else None,
        until=unix_time("until", given["until"]) if "until" in given else None,
        text=given.get("q"),
        limit=integer("limit", given["limit"], 1, MAX_LIMIT) if "limit" in given else DEFAULT_LIMIT,
        before=integer("before", given["before"], 1, MAX_ID) if "before" in given else None,
        after=integer("after", given["after"], 0, MAX_ID) if "after" in given else None,
    )


def fts_phrases(text: str) -> str:
    """FTS5 MATCH text where every word is a quoted phrase: no operator reaches FTS5."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in text.split())


def _where(query: EventQuery, engine: str, failures: Collection[str]) -> tuple[str, list[object]]:
    where: list[str] = []
    params: list[object] = []
    for column, value in (
        ("source", query.source),
        ("app", query.app),
        ("event", query.name),
        ("context_id", query.context_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.level == "error":
        levels = sorted(ERROR_LEVELS)
        names = sorted(failures)
        where.append(
            f"(level IN ({', '.join('?' * len(levels))})"
            + (f" OR event IN ({', '.join('?' * len(names))}))" if names else ")")
        )
        params.extend([*levels, *names])
    elif query.level is not None:
        where.append("level = ?")
        params.append(query.level)
    if query.since is not None:
        where.append("event_time >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("event_time < ?")
        params.append(query.until)
    if query.text is not None and query.text.split():
        if engine == "postgresql":
            where.append(f"{SEARCH_VECTOR} @@ plainto_tsquery('simple', ?)")
            params.append(query.text)
        else:
            where.append("id IN (SELECT rowid FROM events_fts WHERE events_fts MATCH ?)")
            params.append(fts_phrases(query.text))
    if query.before is not None:
        where.append("id < ?")
        params.append(query.before)
    if query.after is not None:
        where.append("id > ?")
        params.append(query.after)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def events_sql(
    query: EventQuery, engine: str, failures: Collection[str]
) -> tuple[str, list[object]]:
    """The SELECT of `query` and its parameters."""
    where, params = _where(query, engine, failures)
    order = "ASC" if query.after is not None else "DESC"
    sql = f"SELECT {', '.join(_COLUMNS)} FROM events{where} ORDER BY id {order} LIMIT ?"
    return sql, [*params, query.limit]


def find_events(store: Store, query: EventQuery, failures: Collection[str]) -> list[dict[str, Any]]:
    """The events matching `query`: newest first, or oldest first after `after`."""
    with store.reading() as session:
        if store.engine.name == "postgresql" and query.text is not None and query.text.split():
            rows = within_search_limit(session, lambda: _search_postgres(session, query, failures))
        else:
            sql, params = events_sql(query, store.engine.name, failures)
            rows = session.fetch(sql, params)
    return [event_json(row) for row in rows]


def _search_postgres(
    session: Session, query: EventQuery, failures: Collection[str]
) -> list[tuple[Any, ...]]:
    """A page of `q` on PostgreSQL, at a cost bounded by the page, whatever the word.

    Left to itself the planner picks the walk down the ids or the GIN index
    from statistics, and a word they do not list looked common to it: it
    walked all 1,000,000 events for a word in none (9 s). So a bounded walk
    goes first, and goes on if its matches say the page fills soon; a walk
    that cannot fill the page gives way to the index, with index and
    sequential scans off so the planner cannot walk again. Words without
    phrases need no recheck: the index's part reads its matches only. Runs
    inside within_search_limit.
    """
    first_rows = query.limit * FIRST_WALK
    rows = _walk(session, query, failures, first_rows)
    if len(rows) == query.limit:
        return rows
    edge = _nth_id(session, query, failures, first_rows)
    if edge is None:  # the walk read every event the other filters let through
        return rows
    if rows:
        needed = (query.limit - len(rows)) * first_rows * 3 // (2 * len(rows))
        if needed <= query.limit * LONGEST_WALK:
            beyond = replace(query, limit=query.limit - len(rows))
            if query.after is not None:
                beyond = replace(beyond, after=edge)
            else:
                beyond = replace(beyond, before=edge)
            rows += _walk(session, beyond, failures, needed)
            if len(rows) == query.limit:
                return rows
    sql, params = events_sql(query, "postgresql", failures)
    session.execute("SET LOCAL enable_indexscan = off")
    session.execute("SET LOCAL enable_seqscan = off")
    return session.fetch(sql, params)


def _walk(
    session: Session, query: EventQuery, failures: Collection[str], events: int
) -> list[tuple[Any, ...]]:
    """Matches of `query.text` among the next `events` events its other filters let through."""
    where, params = _where(replace(query, text=None), "postgresql", failures)
    order = "ASC" if query.after is not None else "DESC"
    return session.fetch(
        f"SELECT {', '.join(_COLUMNS)} FROM (SELECT id, {', '.join(EVENT_FIELDS)}, payload "
        f"FROM events{where} ORDER BY id {order} LIMIT ?) AS nearest "
        f"WHERE {SEARCH_VECTOR} @@ plainto_tsquery('simple', ?) ORDER BY id {order} LIMIT ?",
        [*params, events, query.text, query.limit],
    )


def _nth_id(session: Session, query: EventQuery, failures: Collection[str], n: int) -> int | None:
    """The id of the `n`th event a walk of `query` reads, or None when there are fewer."""
    where, params = _where(replace(query, text=None), "postgresql", failures)
    order = "ASC" if query.after is not None else "DESC"
    found = session.fetch(
        f"SELECT id FROM events{where} ORDER BY id {order} LIMIT 1 OFFSET ?", [*params, n - 1]
    )
    return int(found[0][0]) if found else None


def event_json(row: Sequence[Any]) -> dict[str, Any]:
    (id_, stream, seq, received, source, app, name, moment, context, level, payload) = row
    return {
        "id": id_,
        "stream_id": stream,
        "seq": seq,
        "received_at": iso_time(received),
        "timestamp": iso_time(moment),
        "source": source,
        "app": app,
        "event": name,
        "context_id": context,
        "level": level,
        "payload": json_codec.loads(payload),
    }


SUMMARY_COUNTS_SQL = (
    "SELECT app, event, total, last_time FROM event_counts WHERE source = ? ORDER BY app, event"
)
RECENT_FAILURES_SQL = (
    "SELECT id, event_time, event, CAST(payload AS TEXT) FROM events "
    "WHERE app = ? AND event = ? AND source = ? ORDER BY id DESC LIMIT ?"
)


def vrooli_summary(store: Store, failures: Collection[str]) -> dict[str, Any]:
    """GET /api/v1/telemetry: per scenario its totals, failure counts and latest failures.

    Counts come from event_counts (a row per scenario and event name), the
    latest failures from the (app, event, id) index: a few rows read, however
    many events are stored.
    """
    with store.reading() as session:
        counts = session.fetch(SUMMARY_COUNTS_SQL, (VROOLI,))
        scenarios: dict[str, dict[str, Any]] = {}
        last: dict[str, float] = {}
        for app, name, total, moment in counts:
            entry = scenarios.setdefault(
                app,
                {
                    "scenario": app,
                    "total_events": 0,
                    "last_event": None,
                    "failure_counts": {},
                    "recent_failures": [],
                },
            )
            entry["total_events"] += total
            last[app] = max(last.get(app, moment), moment)
            if name in failures:
                entry["failure_counts"][name] = total
        for app, entry in scenarios.items():
            entry["last_event"] = iso_time(last[app])
            recent: list[tuple[Any, ...]] = []
            for name in entry["failure_counts"]:
                recent += session.fetch(RECENT_FAILURES_SQL, (app, name, VROOLI, RECENT_FAILURES))
            recent.sort(reverse=True)
            for _, moment, name, payload in recent[:RECENT_FAILURES]:
                whole = json_codec.loads(payload)
                stamp = whole.get("timestamp")
                entry["recent_failures"].append(
                    {
                        "timestamp": stamp if isinstance(stamp, str) else iso_time(moment),
                        "event": name,
                        "details": whole.get("details"),
                    }
                )
    return {"scenarios": list(scenarios.values()), "total_scenarios": len(scenarios)}
