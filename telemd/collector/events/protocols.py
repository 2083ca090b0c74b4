"""From a client's body to Events: shuttle, Vrooli, and any app.

Each function reads one request's body whole and returns its events, or
raises EventError naming the first bad one. Pure code: no I/O; the received
time comes in as `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from telemd.collector import json_codec
from telemd.collector.events.formats import events_of, sniff, whole_json
from telemd.collector.events.model import Event, EventError, make_event, text_field

SHUTTLE = "shuttle"
VROOLI = "vrooli"
APP_EVENTS = "events"
SHUTTLE_CONTEXT = "shuttle.contextID"
VROOLI_DEFAULTS = {"scenario": "unknown", "mode": "bundled", "source": "upload"}


def iso_time(seconds: float) -> str:
    """RFC 3339 in UTC with a Z, as the clients write it."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    text = moment.isoformat(timespec="microseconds" if seconds % 1 else "seconds")
    return text.replace("+00:00", "Z")


def shuttle_events(body: bytes, now: float) -> list[Event]:
    """POST /publish: shuttle's array of {app, timestamp, properties}, or one (its docs)."""
    events = []
    for index, obj in enumerate(events_of(whole_json(body))):
        properties = obj.get("properties", {})
        if not isinstance(properties, dict):
            raise EventError("'properties' must be an object", index)
        phase = text_field(properties, "phase", index)
        events.append(
            make_event(
                SHUTTLE,
                obj,
                received_at=now,
                index=index,
                app=text_field(obj, "app", index),
                name=text_field(properties, "label", index) or phase,
                timestamp=text_field(obj, "timestamp", index),
                context_id=text_field(properties, SHUTTLE_CONTEXT, index),
                level="error" if phase == "error" or properties.get("error") else None,
            )
        )
    return events


def vrooli_events(
    body: bytes, content_type: str, query: Mapping[str, str], now: float
) -> list[Event]:
    """POST /api/v1/telemetry/upload: the wrapper, a JSON array or JSONL lines.

    As Vrooli's server does, each event gets its timestamp (the server's
    time when it has none), scenario_name, deployment_mode and source.
    """
    value = sniff(body, content_type)
    wrapper: Mapping[str, Any] = {}
    if isinstance(value, dict) and "events" in value:
        wrapper = value
        value = value["events"]
        if not isinstance(value, list):
            raise EventError("'events' must be a JSON array of objects")
        for key in ("scenario_name", "deployment_mode", "source"):
            text_field(wrapper, key, None)
    filled = {
        "scenario": query.get("scenario") or wrapper.get("scenario_name"),
        "mode": query.get("mode") or wrapper.get("deployment_mode"),
        "source": query.get("source") or wrapper.get("source"),
    }
    events = []
    for index, obj in enumerate(events_of(value)):
        name = text_field(obj, "event", index)
        scenario = (
            filled["scenario"]
            or text_field(obj, "scenario", index)
            or text_field(obj, "scenario_name", index)
            or VROOLI_DEFAULTS["scenario"]
        )
        sent_time = obj.get("timestamp", obj.get("ts"))
        if sent_time is not None and not isinstance(sent_time, str | int | float):
            raise EventError("'timestamp' must be a string", index)
        whole = dict(obj)
        whole.setdefault("timestamp", sent_time if sent_time is not None else iso_time(now))
        whole["scenario_name"] = scenario
        whole.setdefault("deployment_mode", filled["mode"] or VROOLI_DEFAULTS["mode"])
        whole.setdefault("source", filled["source"] or VROOLI_DEFAULTS["source"])
        events.append(
            make_event(
                VROOLI,
                whole,
                received_at=now,
                index=index,
                app=scenario,
                name=name,
                timestamp=whole["timestamp"],
                context_id=text_field(obj, "deployment_id", index),
                level=text_field(obj, "level", index),
                identity=json_codec.dumps(obj),
            )
        )
    return events


def app_events(body: bytes, content_type: str, now: float) -> list[Event]:
    """POST /api/v1/events: objects with optional app, event, timestamp, context_id, level.

    A Ch-aOS logbook (a "summary" with total_operations) is one event of app
    "chaos", named "logbook", at level error when an operation failed.
    """
    events = []
    for index, obj in enumerate(events_of(sniff(body, content_type))):
        app = text_field(obj, "app", index)
        name = text_field(obj, "event", index)
        level = text_field(obj, "level", index)
        summary = obj.get("summary")
        if isinstance(summary, dict) and "total_operations" in summary:
            failed = summary.get("failed_operations") or summary.get("status") not in (
                None,
                "success",
            )
            app, name = app or "chaos", name or "logbook"
            level = level or ("error" if failed else "info")
        timestamp = obj.get("timestamp")
        if timestamp is not None and not isinstance(timestamp, str | int | float):
            raise EventError("'timestamp' must be a string or a number", index)
        events.append(
            make_event(
                APP_EVENTS,
                obj,
                received_at=now,
                index=index,
                app=app,
                name=name,
                timestamp=timestamp,
                context_id=text_field(obj, "context_id", index),
                level=level,
            )
        )
    return events
