"""What an event is once read: the whole JSON object plus the fields the
collector indexes, and the rules every protocol shares to get there.

Pure code: no I/O, no clock (the received time is passed in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from hashlib import sha256
from typing import Any

from telemd.collector import json_codec

# The longest app, event name, context id or level kept; longer is refused.
MAX_FIELD = 256
# 23:59:59 UTC on 9999-12-31.
MAX_UNIX_TIME = 253402300799.0
# 128 bits of SHA-256: no two distinct events meet by chance, and the
# unique index takes half the bytes (and time) of the hex form.
DIGEST_BYTES = 16
# Levels that count as failures whatever the event's name.
ERROR_LEVELS = frozenset({"error", "critical", "fatal", "alert", "emergency", "panic"})
# Vrooli's failure events: those its code counts, then those its docs add.
DEFAULT_FAILURE_EVENTS = (
    "dependency_unreachable",
    "swap_missing_asset",
    "asset_missing",
    "migration_failed",
    "api_unreachable",
    "secrets_missing",
    "health_failed",
    "crash",
    "service_crashed",
    "update_error",
    "health_check_failed",
    "readiness_timeout",
)
# Request headers never stored with a stream: they carry credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)


class EventError(ValueError):
    """One event (or the body holding it) cannot be taken; says where and why."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index


@dataclass(frozen=True, slots=True)
class Event:
    source: str  # the protocol that brought it: shuttle, vrooli, events, ...
    payload: bytes  # the whole event, as JSON
    time: float  # its own timestamp in unix seconds, or the received time
    digest: bytes  # identical events of one source share it, and are stored once
    app: str | None = None
    name: str | None = None
    context_id: str | None = None
    level: str | None = None


def parse_time(value: object) -> float | None:
    """Unix seconds from a number or an RFC 3339 / ISO-8601 text; None if neither.

    RFC 3339 allows nine decimals (shuttle sends nanoseconds); datetime
    takes six, so the rest is cut, which loses under a microsecond.
    """
    if isinstance(value, str):
        if len(value) > 64:
            return None
        try:
            # Python 3.11 reads most texts as they come ("Z", nine decimals).
            moment: datetime | None = datetime.fromisoformat(value)
        except ValueError:
            moment = _normalised_time(value)
        return None if moment is None else seconds_of(moment)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        return seconds if 0 <= seconds <= MAX_UNIX_TIME else None
    return None


def seconds_of(moment: datetime) -> float | None:
    """Unix seconds of `moment` (UTC when it has no zone); None outside 1970..9999."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        seconds = moment.timestamp()
    except (OverflowError, ValueError):
        return None
    return seconds if 0 <= seconds <= MAX_UNIX_TIME else None


def _normalised_time(value: str) -> datetime | None:
    """What fromisoformat reads once the text is made plain: spaces, "z", extra decimals."""
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}" if digits else text
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def text_field(obj: Mapping[str, Any], key: str, index: int | None) -> str | None:
    """obj[key] as a short text, None when absent or null; EventError when of another type."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"{key!r} must be a string, got {type(value).__name__}", index)
    if len(value) > MAX_FIELD:
        raise EventError(f"{key!r} is longer than {MAX_FIELD} characters", index)
    return value


def make_event(
    source: str,
    obj: Mapping[str, Any],
    *,
    received_at: float,
    index: int | None = None,
    app: str | None = None,
    name: str | None = None,
    timestamp: object = None,
    context_id: str | None = None,
    level: str | None = None,
    identity: bytes | None = None,
) -> Event:
    """An Event of `obj`, stored whole; `identity` (default: the payload) decides duplicates.

    A protocol that fills fields in (a server time, say) passes the event as
    received as its identity, so that posting it twice stores it once.
    """
    payload = json_codec.dumps(obj)
    if b"\\u0000" in payload:
        # PostgreSQL's JSONB cannot hold it; refused on every engine alike.
        raise EventError("strings must not hold the NUL character (\\u0000)", index)
    if app is not None and len(app) > MAX_FIELD:
        raise EventError(f"app is longer than {MAX_FIELD} characters", index)
    if name is not None and len(name) > MAX_FIELD:
        raise EventError(f"event is longer than {MAX_FIELD} characters", index)
    if context_id is not None and len(context_id) > MAX_FIELD:
        raise EventError(f"context id is longer than {MAX_FIELD} characters", index)
    if level is not None:
        if len(level) > MAX_FIELD:
            raise EventError(f"level is longer than {MAX_FIELD} characters", index)
        level = level.lower()
    seconds = None if timestamp is None else parse_time(timestamp)
    digest = sha256(
        (app.encode() if app else b"") + b"\n" + (payload if identity is None else identity)
    ).digest()[:DIGEST_BYTES]
    return Event(
        source,
        payload,
        received_at if seconds is None else seconds,
        digest,
        app,
        name,
        context_id,
        level,
    )


def stored_headers(
    headers: Mapping[str, str], path: str, query: str, path_token: str | None = None
) -> dict[str, str]:
    """The headers to keep with a stream: credentials out, and the target without tokens.

    The ingest routes take a token as the URL's last segment (`path_token`),
    and a query may carry one too (?token=, ?api_key=): both are masked.
    """
    kept = {
        name.lower(): value for name, value in headers.items() if name.lower() not in SECRET_HEADERS
    }
    target = path.replace(path_token, "***") if path_token else path
    if query:
        parts = []
        for part in query.split("&"):
            key, sep, _ = part.partition("=")
            secret = any(word in key.lower() for word in ("token", "key", "secret", "password"))
            parts.append(f"{key}{sep}***" if secret and sep else part)
        target += "?" + "&".join(parts)
    kept[":target"] = target
    return kept
