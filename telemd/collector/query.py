"""What an operator asks of the store, and how a stored record is shown.

Pure code shared by the HTTP API and `telemd-collector query`: filters parsed
from strings into a `RecordQuery`, and rows turned into the record JSON that
both print. The clock is passed in (`now`), never read here.

Pagination is keyset on the record's integer `id`: records come newest first;
an answer carries `next`, the id to pass as `before` for the following page,
or null on the last page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from telemd.collector.ingest import INT_FIELDS, RECORD_COLUMNS, FieldError

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
# The stored columns, in the order every SELECT of a record lists them.
SELECT_COLUMNS: tuple[str, ...] = ("id", "received_at", *RECORD_COLUMNS)
FILTER_NAMES = (
    "severity",
    "classification",
    "build",
    "machine_id",
    "created_in_days",
    "created_in_sec",
    "limit",
    "before",
)


@dataclass(frozen=True, slots=True)
class RecordQuery:
    severity: int | None = None
    classification: str | None = None
    build: str | None = None
    machine_id: str | None = None
    # Unix time: only records received at or after it (created_in_days/sec).
    since: float | None = None
    limit: int = DEFAULT_LIMIT
    # Keyset cursor: only records whose id is below it.
    before: int | None = None


def _int(name: str, value: str, low: int, high: int) -> int:
    if not value.isascii() or not value.isdigit():
        raise FieldError(name, f"must be a non-negative integer, got {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise FieldError(name, f"must be in {low}..{high}, got {number}")
    return number


def parse_query(params: Mapping[str, str], now: float) -> RecordQuery:
    """Build a query from telemetrics-backend's parameter names; unknown ones are refused."""
    unknown = sorted(set(params) - set(FILTER_NAMES))
    if unknown:
        raise FieldError(unknown[0], f"is not a filter; use one of {', '.join(FILTER_NAMES)}")
    since: float | None = None
    if params.get("created_in_days"):
        days = _int("created_in_days", params["created_in_days"], 0, 100_000)
        since = now - days * 86400
    if params.get("created_in_sec"):
        seconds = _int("created_in_sec", params["created_in_sec"], 0, 100_000 * 86400)
        since = max(since or 0.0, now - seconds)
    return RecordQuery(
        severity=_int("severity", params["severity"], 1, 4) if params.get("severity") else None,
        classification=params.get("classification") or None,
        build=params.get("build") or None,
        machine_id=params.get("machine_id") or None,
        since=since,
        limit=_int("limit", params["limit"], 1, MAX_LIMIT)
        if params.get("limit")
        else DEFAULT_LIMIT,
        before=_int("before", params["before"], 1, 2**63 - 1) if params.get("before") else None,
    )


def parse_since(value: str) -> float:
    """`since` for the summary: unix seconds or an ISO-8601 time (UTC if no zone)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError("since", f"must be unix seconds or ISO-8601, got {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


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
