"""Bodies of events: one JSON value (an array, a wrapper or one object) or NDJSON.

A body is read whole before anything is stored: one bad event refuses the
body (EventError naming it), so a client that resends after fixing it never
finds half of it stored. Pure code: no I/O.
"""

from __future__ import annotations

from typing import Any

from telemd.collector import json_codec
from telemd.collector.events.model import EventError

# Vrooli's reader takes JSONL lines up to 1 MiB; so does every route here.
MAX_LINE = 1024 * 1024
# A 4 MiB body of "{}" lines would be a million events to judge at once.
MAX_EVENTS = 100_000
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq")


def _objects(items: list[Any]) -> list[dict[str, Any]]:
    if len(items) > MAX_EVENTS:
        raise EventError(f"a body holds at most {MAX_EVENTS} events, got {len(items)}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise EventError(f"must be a JSON object, got {_kind(item)}", index)
    return items


def _kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "null" if value is None else "number"
    )


def ndjson(body: bytes) -> list[dict[str, Any]]:
    """One JSON object per line; blank lines are skipped."""
    items: list[Any] = []
    for number, line in enumerate(body.split(b"\n"), 1):
        if len(line) > MAX_LINE:
            raise EventError(f"line {number} is longer than {MAX_LINE} bytes", len(items))
        if not line.strip():
            continue
        try:
            items.append(json_codec.loads(line))
        except ValueError as exc:
            raise EventError(f"line {number} is not valid JSON: {exc}", len(items)) from None
        if len(items) > MAX_EVENTS:
            break
    return _objects(items)


def whole_json(body: bytes) -> Any:
    """The body as one JSON value; EventError if it is not JSON."""
    try:
        return json_codec.loads(body)
    except ValueError as exc:
        raise EventError(f"body is not valid JSON: {exc}") from None


def events_of(value: Any) -> list[dict[str, Any]]:
    """An array of event objects, or one object that is the event."""
    if isinstance(value, list):
        return _objects(value)
    if isinstance(value, dict):
        return [value]
    raise EventError(f"body must be a JSON array of objects or one object, got {_kind(value)}")


def sniff(body: bytes, content_type: str) -> Any:
    """The body's JSON value, or its NDJSON objects as a list.

    Whatever the content type says, one JSON value is taken as such (a
    pretty-printed logbook posted by curl comes as form data); NDJSON types
    and bodies that are not one value are read line by line.
    """
    if content_type == "application/json":
        return whole_json(body)
    if content_type not in NDJSON_TYPES:
        try:
            return json_codec.loads(body)
        except ValueError:
            pass  # several lines, read below
    return ndjson(body)
