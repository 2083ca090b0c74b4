"""The events routes: shuttle's /publish, Vrooli's /api/v1/telemetry, any app's /api/v1/events.

A body is read and judged whole in a worker thread, then stored with its
stream in one transaction on the writer thread: a 2xx means every event of
it is stored (shuttle deletes its file on any 2xx), a 4xx that none is, and
what was stored before stays.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from telemd.collector.access.guard import Access, GuardedRoute
from telemd.collector.events import protocols
from telemd.collector.events.model import Event, EventError, stored_headers
from telemd.collector.events.query import (
    find_events,
    parse_event_query,
    vrooli_summary,
)
from telemd.collector.events.store import store_batch
from telemd.collector.ingest.records import FieldError
from telemd.collector.server.http import DRAIN_LIMIT, JSONResponse, Refused, media_type, read_body
from telemd.collector.server.params import EVENT_FILTERS, ROUTE_PARAMS, read_query
from telemd.collector.store.base import StorageError

if TYPE_CHECKING:
    from telemd.collector.server.app import Collector

log = logging.getLogger("telemd.collector")
VROOLI_UPLOAD = "/api/v1/telemetry/upload"


def _collector(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    return collector


def _refused(exc: EventError) -> Refused:
    where = f"event {exc.index + 1}: " if exc.index is not None else ""
    return Refused(400, where + exc.message, "body")


async def _take(
    request: Request, protocol: str, parse: Callable[[bytes, float], list[Event]]
) -> tuple[int, int]:
    """Read, judge and store one body: (events in it, events new)."""
    c = _collector(request)
    body = await read_body(request)
    now = c.clock()
    client = request.client
    try:
        events = await anyio.to_thread.run_sync(parse, body, now)
    except EventError as exc:
        refusal = _refused(exc)
        c.metrics.count_events(protocol, "rejected")
        # The client is told; the journal keeps a line too, as nothing may vanish unnoted.
        log.info(
            "refused a %d-byte %s body from %s: %s",
            len(body),
            protocol,
            client.host if client else "?",
            refusal.message[:200],
        )
        raise refusal from None
    headers = stored_headers(
        request.headers,
        request.url.path,
        request.url.query,
        path_token=request.path_params.get("token"),
    )
    try:
        _, new = await c.writer.call(
            lambda: store_batch(
                c.store, protocol, client.host if client else "", headers, events, now
            )
        )
    except StorageError as exc:
        c.metrics.count_storage_error()
        raise Refused(503, f"storage unavailable: {exc.message}") from None
    c.metrics.count_events(protocol, "stored", new)
    c.metrics.count_events(protocol, "duplicate", len(events) - new)
    return len(events), new


async def publish_check(request: Request) -> Response:
    """GET /publish: shuttle's availability check."""
    return JSONResponse({"status": "ok"})


async def publish(request: Request) -> Response:
    """POST /publish: shuttle's upload of one spool file."""
    received, new = await _take(request, protocols.SHUTTLE, protocols.shuttle_events)
    return JSONResponse({"received": received, "stored": new, "duplicates": received - new})


async def vrooli_upload(request: Request) -> Response:
    """POST /api/v1/telemetry/upload: Vrooli's wrapper, JSON array or JSONL."""
    try:
        query = read_query(request.scope["query_string"], ROUTE_PARAMS[VROOLI_UPLOAD])
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    content_type = media_type(request)

    def parse(body: bytes, now: float) -> list[Event]:
        return protocols.vrooli_events(body, content_type, query, now)

    received, _ = await _take(request, protocols.VROOLI, parse)
    # Every event is held, once: a duplicate was stored by an earlier upload.
    return JSONResponse(
        {"status": "accepted", "events_received": received, "events_stored": received}
    )


async def post_events(request: Request) -> Response:
    """POST /api/v1/events: any app's JSON array, NDJSON, or one object."""
    try:  # the path's parameters are GET's filters; a post takes none
        read_query(request.scope["query_string"], ())
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    content_type = media_type(request)

    def parse(body: bytes, now: float) -> list[Event]:
        return protocols.app_events(body, content_type, now)

    received, new = await _take(request, protocols.APP_EVENTS, parse)
    return JSONResponse({"received": received, "stored": new, "duplicates": received - new})


async def list_events(request: Request) -> Response:
    c = _collector(request)
    try:
        query = parse_event_query(read_query(request.scope["query_string"], EVENT_FILTERS))
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    events = await c.read(find_events, c.store, query, c.config.failure_events)
    more = len(events) == query.limit
    cursor = "after" if query.after is not None else "before"
    return JSONResponse({"events": events, cursor: events[-1]["id"] if more else None})


async def telemetry_summary(request: Request) -> Response:
    c = _collector(request)
    summary: dict[str, Any] = await c.read(vrooli_summary, c.store, c.config.failure_events)
    return JSONResponse(summary)


def _ingest(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> list[GuardedRoute]:
    """An ingest route, and its twin with the token as the URL's last segment."""
    return [
        GuardedRoute(p, endpoint, methods=["POST"], access=Access.INGEST, max_body=DRAIN_LIMIT)
        for p in (path, path + "/{token}")
    ]


EVENT_ROUTES = [
    *_ingest("/publish", publish),
    GuardedRoute("/publish", publish_check, methods=["GET"], access=Access.OPEN),
    *_ingest(VROOLI_UPLOAD, vrooli_upload),
    GuardedRoute("/api/v1/telemetry", telemetry_summary, methods=["GET"], access=Access.READ),
    *_ingest("/api/v1/events", post_events),
    GuardedRoute("/api/v1/events", list_events, methods=["GET"], access=Access.READ),
]
