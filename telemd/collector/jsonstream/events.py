"""What the collector keeps of one event of the Go client's stream.

The event is kept whole; slog's `time`, `level` and `msg` (its records'
keys) fill the indexed columns when they are short texts. Any JSON value is
an event, as the project's own server takes it. Pure code: no I/O.
"""

from __future__ import annotations

from typing import Any

from telemd.collector.events.model import MAX_FIELD, Event, make_event

SOURCE = "telemetry"


def _short_text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and len(value) <= MAX_FIELD else None


def to_event(value: Any, *, index: int, received_at: float) -> Event:
    """The Event of one stream value; EventError when it cannot be stored (a NUL in a text)."""
    if not isinstance(value, dict):
        return make_event(SOURCE, value, received_at=received_at, index=index)
    return make_event(
        SOURCE,
        value,
        received_at=received_at,
        index=index,
        app=_short_text(value, "app"),
        name=_short_text(value, "msg") or _short_text(value, "event"),
        timestamp=value.get("time", value.get("timestamp")),
        level=_short_text(value, "level"),
    )
