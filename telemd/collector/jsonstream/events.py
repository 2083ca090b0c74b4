"""What the collector keeps of one event of the Go client's stream.

The event is kept whole; slog's `time`, `level` and `msg` (its records'
keys) fill the indexed columns when they are short texts. Any JSON value is
an event, as the project's own server takes it. Pure code: no I/O.
"""

from __future__ import annotations

from typing import Any

from telemd.collector.events.model import MAX_FIELD, Event, make_event

SOURCE = "telemetry"


def to_event(value: Any, *, index: int, received_at: float) -> Event:
    """The Event of one stream value; EventError when it cannot be stored (a NUL in a text)."""
    if not isinstance(value, dict):
        return make_event(SOURCE, value, received_at=received_at, index=index)
    # The hot path of every stream: one lookup a key, no call a field.
    app, name, level = value.get("app"), value.get("msg"), value.get("level")
    if not (isinstance(name, str) and len(name) <= MAX_FIELD):
        name = value.get("event")
        if not (isinstance(name, str) and len(name) <= MAX_FIELD):
            name = None
    return make_event(
        SOURCE,
        value,
        received_at=received_at,
        index=index,
        app=app if isinstance(app, str) and len(app) <= MAX_FIELD else None,
        name=name,
        timestamp=value["time"] if "time" in value else value.get("timestamp"),
        level=level if isinstance(level, str) and len(level) <= MAX_FIELD else None,
    )
