"""What an operator asks of the store, and how a stored record is shown.

Pure code shared by the HTTP API and `telemd-collector query`: filters parsed
from strings into a `RecordQuery`, and rows turned into the record JSON that
both print. The clock is passed in (`now`), never read here.

Pagination is keyset on the record's integer `id`: records come newest first;
an answer carries `next`, the id to pass as `before` for the following page,
or null on the last page.

A classification with `*` in it is a pattern (`org.clearlinux/crash/*`), `*`
standing for any run of characters, `/` included; `q` is words to find in
the payload, in that order, whatever the case and the characters between
them (telemd.collector.store.search says how each engine does it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from telemd.collector.ingest.records import INT_FIELDS, RECORD_COLUMNS, FieldError
from telemd.collector.server.params import RECORD_FILTERS, integer, unix_time
from telemd.record import is_event_id

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# The stored columns, in the order every SELECT of a record lists them.
SELECT_COLUMNS: tuple[str, ...] = ("id", "received_at", *RECORD_COLUMNS)
FILTER_NAMES = RECORD_FILTERS
MAX_DAYS = 100_000
WILDCARD = "*"


# Filters compared for equality with the column of the same name.
EXACT_FILTERS = ("severity", "build", "machine_id", "event_id", "system_name", "host_type")


@dataclass(frozen=True, slots=True)
class RecordQuery:
    severity: int | None = None
    severity_min: int | None = None
    # Exact, or a pattern when it holds WILDCARD.
    classification: str | None = None
    build: str | None = None
    machine_id: str | None = None
    event_id: str | None = None
    system_name: str | None = None
    host_type: str | None = None
    # Unix times: only records received at or after `since` and before `until`.
    since: float | None = None
    until: float | None = None
    # Words the payload holds, in this order.
    q: str | None = None
    limit: int = DEFAULT_LIMIT
    # Keyset cursor: only records whose id is below it.
    before: int | None = None
    # Only records whose id is above it: set by the store, from `since`.
    after: int | None = None


def parse_query(params: Mapping[str, str], now: float) -> RecordQuery:
    """Build a query from telemetrics-backend's parameter names; unknown ones are refused.

    `params` come from `params.read_query` (HTTP) or the command line; an
    empty value counts as absent.
    """
    unknown = sorted(set(params) - set(FILTER_NAMES))
    if unknown:
        raise FieldError(unknown[0], f"is not a filter; use one of {', '.join(FILTER_NAMES)}")
    given = {name: value for name, value in params.items() if value}
    # The latest of the lower bounds given wins: each one must hold.
    lower: list[float] = []
    if "created_in_days" in given:
        days = integer("created_in_days", given["created_in_days"], 0, MAX_DAYS)
        lower.append(now - days * 86400)
    if "created_in_sec" in given:
        seconds = integer("created_in_sec", given["created_in_sec"], 0, MAX_DAYS * 86400)
        lower.append(now - seconds)
    if "since" in given:
        lower.append(unix_time("since", given["since"]))
    event_id = given.get("event_id")
    if event_id is not None and not is_event_id(event_id):
        raise FieldError("event_id", f"must be 32 lowercase hex characters, got {event_id[:40]!r}")
    q = given.get("q")
    if q is not None and not any(ch.isalnum() for ch in q):
        raise FieldError("q", f"must hold a word (letters or digits), got {q[:40]!r}")

    def number(name: str, low: int, high: int) -> int | None:
        return integer(name, given[name], low, high) if name in given else None

    return RecordQuery(
        severity=number("severity", 1, 4),
        severity_min=number("severity_min", 1, 4),
        classification=given.get("classification"),
        build=given.get("build"),
        machine_id=given.get("machine_id"),
        event_id=event_id,
        system_name=given.get("system_name"),
        host_type=given.get("host_type"),
        since=max(lower) if lower else None,
        until=unix_time("until", given["until"]) if "until" in given else None,
        q=q,
        limit=number("limit", 1, MAX_LIMIT) or DEFAULT_LIMIT,
        before=number("before", 1, 2**63 - 1),
    )


def parse_since(value: str) -> float:
    """`since` for the summary: unix seconds or an ISO-8601 time (UTC if no zone)."""
    return unix_time("since", value)


def iso_utc(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_json(row: Sequence[Any]) -> dict[str, Any]:
    """A SELECT_COLUMNS row as the record JSON of the API."""
    record = dict(zip(SELECT_COLUMNS, row, strict=True))
    record["received_at"] = iso_utc(record["received_at"])
    for name in INT_FIELDS:
        record[name] = int(record[name])
    return record


def summary_json(
    counts: Sequence[Sequence[Any]],
    recent: Sequence[Sequence[Any]],
    machines: Sequence[Sequence[Any]],
    since: float | None,
) -> dict[str, Any]:
    """Assemble the summary from its three queries' rows.

    counts: (classification, severity, count, last received_at);
    recent: SELECT_COLUMNS rows of severity >= 3, newest first;
    machines: (machine_id, count), largest first.
    """
    classes: dict[str, dict[str, Any]] = {}
    for classification, severity, count, last in counts:
        entry = classes.setdefault(
            classification,
            {
                "classification": classification,
                "total": 0,
                "last_seen": last,
                "by_severity": {},
                "recent_severe": [],
            },
        )
        entry["total"] += int(count)
        entry["last_seen"] = max(entry["last_seen"], last)
        entry["by_severity"][str(severity)] = int(count)
    for row in recent:
        classes[row[SELECT_COLUMNS.index("classification")]]["recent_severe"].append(
            record_json(row)
        )
    for entry in classes.values():
        entry["last_seen"] = iso_utc(entry["last_seen"])
    return {
        "since": None if since is None else iso_utc(since),
        "classifications": sorted(classes.values(), key=lambda e: e["classification"]),
        "machines": [{"machine_id": m, "count": int(c)} for m, c in machines],
    }
