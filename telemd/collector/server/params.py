"""Query parameters: the one layer between a raw query string and checked values.

Every route declares the parameters it takes (`ROUTE_PARAMS`); `read_query`
turns the raw bytes of a query string into one text value per name, and the
converters below turn a text into a number or a time. Anything else is a
FieldError that names the parameter and says what was expected, which the
routes answer with 400: an unknown or repeated name, bytes that are not
UTF-8, control characters, a value too long, a number out of its range. No
value reaches the store or a formatter unchecked, so none can become a 500.

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from urllib.parse import unquote_to_bytes

from telemd.collector.ingest.records import FieldError

# The record filters of GET /api/records: telemetrics-backend's names, the
# search filters, and the keyset cursor.
RECORD_FILTERS = (
    "severity",
    "severity_min",
    "classification",
    "build",
    "machine_id",
    "event_id",
    "system_name",
    "host_type",
    "created_in_days",
    "created_in_sec",
    "since",
    "until",
    "q",
    "limit",
    "before",
)
# The event filters of GET /api/v1/events (telemd.collector.events.query).
EVENT_FILTERS = (
    "source",
    "app",
    "scenario",
    "event",
    "context_id",
    "level",
    "since",
    "until",
    "q",
    "limit",
    "before",
    "after",
)
# How GET /api/records answers: a JSON page, or the whole result as a stream.
RECORD_FORMATS = ("json", "csv", "ndjson")
SUMMARY_PARAMS = ("since",)
# The console's problems page (its form's names) and its exports: a whole search.
CONSOLE_PROBLEM_PARAMS = ("kind", "build", "days", "sort", "after")
EXPORT_FILTERS = tuple(name for name in RECORD_FILTERS if name not in ("limit", "before"))
# Vrooli's upload names the scenario, deployment mode and source in the query.
VROOLI_UPLOAD_PARAMS = ("scenario", "mode", "source")
PROBLEM_PARAMS = ("kind", "build", "since", "sort", "limit", "after")
ROUTE_PARAMS: Mapping[str, tuple[str, ...]] = {
    "/api/records": (*RECORD_FILTERS, "format"),
    "/api/v1/summary": SUMMARY_PARAMS,
    "/api/v1/telemetry/upload": VROOLI_UPLOAD_PARAMS,
    "/api/v1/events": EVENT_FILTERS,
    "/api/v1/problems": PROBLEM_PARAMS,
    "/api/v1/builds": ("limit",),
    "/console/records": RECORD_FILTERS,
    "/console/records.csv": EXPORT_FILTERS,
    "/console/records.ndjson": EXPORT_FILTERS,
    "/console/problems": CONSOLE_PROBLEM_PARAMS,
    "/console/apps/tail": ("source", "app"),
}
# The longest stored text field is 256 characters; a longer filter matches nothing.
MAX_VALUE = 256
# 23:59:59 UTC on 9999-12-31, the last second a datetime can show.
MAX_UNIX_TIME = 253402300799
# Digits, then at most nine decimals: no sign, exponent, inf, nan or underscores.
_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_INTEGER = re.compile(r"[0-9]{1,19}")


def _shown(text: str) -> str:
    """A value as an error message quotes it: short and printable."""
    return repr(text[:40] + "...") if len(text) > 40 else repr(text)


def _decode(raw: bytes, name: str | None) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        if name is None:
            raise FieldError("query", "parameter names must be UTF-8") from None
        raise FieldError(name, "must be UTF-8 text") from None
    if not text.isprintable():
        raise FieldError(name or "query", f"must not hold control characters: {_shown(text)}")
    return text


def read_query(raw: bytes, allowed: Collection[str]) -> dict[str, str]:
    """The parameters of a query string, each given at most once and among `allowed`.

    An empty value counts as absent, as telemetrics-backend's forms send it.
    """
    # Split by hand: urllib's parse_qsl decodes a bytes query as ASCII and
    # replaces bad UTF-8, so it could neither take nor name such bytes.
    fields = [field for field in raw.split(b"&") if field]
    # One more than allowed, so that a single unknown or repeated name is named.
    if len(fields) > len(allowed) + 1:
        raise FieldError("query", f"holds more than {len(allowed)} parameters")
    values: dict[str, str] = {}
    for field in fields:
        raw_name, _, raw_value = field.replace(b"+", b" ").partition(b"=")
        name = _decode(unquote_to_bytes(raw_name), None)
        if name not in allowed:
            use = f"use one of {', '.join(allowed)}" if allowed else "this route takes none"
            raise FieldError(name[:40] or "query", f"is not a parameter; {use}")
        if name in values:
            raise FieldError(name, "is given more than once; give it once")
        value = _decode(unquote_to_bytes(raw_value), name)
        if len(value) > MAX_VALUE:
            raise FieldError(name, f"is longer than {MAX_VALUE} characters")
        values[name] = value
    return {name: value for name, value in values.items() if value}


def integer(name: str, value: str, low: int, high: int) -> int:
    """A decimal integer in low..high."""
    if not _INTEGER.fullmatch(value):
        raise FieldError(name, f"must be an integer in {low}..{high}, got {_shown(value)}")
    number = int(value)
    if not low <= number <= high:
        raise FieldError(name, f"must be in {low}..{high}, got {number}")
    return number


def choice(name: str, value: str, choices: Collection[str]) -> str:
    """One of a closed set of words."""
    if value not in choices:
        raise FieldError(name, f"must be one of {', '.join(choices)}, got {_shown(value)}")
    return value


def unix_time(name: str, value: str) -> float:
    """Unix seconds or an ISO-8601 time (UTC if it names no zone), in 1970..9999."""
    expected = f"must be unix seconds in 0..{MAX_UNIX_TIME} or an ISO-8601 time"
    if _SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            seconds = moment.timestamp()
        except (ValueError, OverflowError):
            raise FieldError(name, f"{expected}, got {_shown(value)}") from None
    if not 0 <= seconds <= MAX_UNIX_TIME:
        raise FieldError(name, f"{expected}, got {_shown(value)}")
    return seconds
