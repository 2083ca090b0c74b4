"""The collector's HTTP routes (Starlette): ingest, query, health and metrics.

Thin: formats and rules live in `ingest`, filters in `query`, SQL in `store`.
Parsing a batch and every read run in worker threads and every write goes to
the writer thread, so the event loop never waits on JSON or the database.
Hostile input gets a 4xx with {"message": ...}; a database failure a 503;
nothing a client sends may produce a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from telemd.collector.access import token_store
from telemd.collector.access.guard import (
    Access,
    Denied,
    Guard,
    GuardedRoute,
    GuardedWebSocketRoute,
    denied,
)
from telemd.collector.access.tokens import TokenInfo
from telemd.collector.config import CollectorConfig
from telemd.collector.console import auth as console_auth
from telemd.collector.console.routes import CONSOLE_ROUTES
from telemd.collector.events.routes import EVENT_ROUTES
from telemd.collector.ingest import records as ingest
from telemd.collector.ingest.records import FieldError, Row, Rules
from telemd.collector.ingest.writer import Writer
from telemd.collector.jsonstream.commit import StreamCommitter
from telemd.collector.jsonstream.post import STREAM_TYPES, post_stream
from telemd.collector.jsonstream.websocket import TOKEN_PATH, WebSocketIngest
from telemd.collector.problems import routes as problem_routes
from telemd.collector.problems.rollups import Signed
from telemd.collector.server.http import (
    DRAIN_LIMIT,
    JSONResponse,
    Refused,
    media_type,
    read_body,
)
from telemd.collector.server.metrics import Metrics
from telemd.collector.server.params import RECORD_FORMATS, ROUTE_PARAMS, choice, read_query
from telemd.collector.store import export
from telemd.collector.store.base import Retention, SearchTimeout, StorageError, Store
from telemd.collector.store.query import RecordQuery, parse_query, parse_since, record_json

log = logging.getLogger("telemd.collector")
# A 4 MiB body of tiny lines would be a million rejections to report.
MAX_BATCH_RECORDS = 10_000
BATCH_TYPES = ("application/x-ndjson", "application/json")
UNBOUNDED = 2**63 - 1


class Collector:
    """The state behind the routes: config, store, writer, metrics, clock."""

    def __init__(
        self, config: CollectorConfig, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.rules = Rules(config.tids, config.max_payload_size)
        self.retention = Retention(config.retention_days, dict(config.retention))
        self.metrics = Metrics()
        self.writer = Writer(store, clock)
        # The event streams' group commit, through the same writer.
        self.stream_commits = StreamCommitter(self.writer, store, clock)
        self._readers: anyio.CapacityLimiter | None = None

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a store read in a worker thread."""
        if self._readers is None:
            # Made in the running loop: anyio 3 (Debian 12's) cannot make one
            # before, it asks sniffio which event loop runs.
            self._readers = anyio.CapacityLimiter(self.store.readers)
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._readers)
        except SearchTimeout as exc:
            raise Refused(400, exc.message) from None
        except StorageError as exc:
            self.metrics.count_storage_error()
            raise Refused(503, f"storage unavailable: {exc.message}") from None

    async def write(
        self, rows: Sequence[Row], signed: Signed | None = None
    ) -> tuple[dict[str, int], float]:
        try:
            return await self.writer.insert(rows, signed)
        except StorageError as exc:
            self.metrics.count_storage_error()
            raise Refused(503, f"storage unavailable: {exc.message}") from None

    async def purge_forever(self) -> None:
        """The retention schedule: purge now, then every purge_interval seconds."""
        while True:
            try:
                deleted = await self.writer.call(
                    lambda: self.store.purge(self.retention, self.clock())
                )
                if deleted:
                    log.info("retention purge deleted %d records", deleted)
            except StorageError as exc:
                self.metrics.count_storage_error()
                log.warning("retention purge failed: %s", exc.message)
            await asyncio.sleep(self.config.purge_interval)


def collector_of(request: Request) -> Collector:
    collector: Collector = request.app.state.collector
    return collector


async def ingest_single(request: Request) -> Response:
    """POST / and /v2/collector: one record, "headers" or "json" format."""
    c = collector_of(request)
    fmt = "json" if media_type(request) == "application/json" else "headers"
    try:
        tid = ingest.check_tid(request.headers.get(ingest.TID_HEADER), c.rules)
        header_id = request.headers.get(ingest.RECORD_ID_HEADER)
        if header_id is not None:
            header_id = ingest.check_record_id(header_id, ingest.new_record_id)
        body = await read_body(request)
        if fmt == "json":
            row = ingest.parse_json_format(body, tid=tid, record_id=header_id, rules=c.rules)
        else:
            record_id = header_id or ingest.new_record_id()
            row = ingest.parse_headers_format(
                request.headers, body, tid=tid, record_id=record_id, rules=c.rules
            )
    except FieldError as exc:
        c.metrics.count_records(fmt, "rejected")
        raise Refused.from_field(exc) from None
    except Refused:
        c.metrics.count_records(fmt, "rejected")
        raise
    stored, received_at = await c.write([row])
    record_id = str(row[0])
    if record_id in stored:
        c.metrics.count_records(fmt, "stored")
        return JSONResponse(record_json((stored[record_id], received_at, *row)), status_code=201)
    c.metrics.count_records(fmt, "duplicate")
    earlier = await c.read(c.store.record, record_id)
    if earlier is None:  # purged between the insert and now
        return JSONResponse(record_json((None, received_at, *row)), status_code=200)
    return JSONResponse(record_json(earlier), status_code=200)


async def ingest_root(request: Request) -> Response:
    """POST /: the Go client's stream of JSON values, or one Clear record."""
    if media_type(request) in STREAM_TYPES:
        return await post_stream(request)
    return await ingest_single(request)


async def ingest_batch(request: Request) -> Response:
    """POST /api/v1/records: NDJSON or a JSON array, each record judged on its own."""
    c = collector_of(request)
    content_type = media_type(request)
    if content_type not in BATCH_TYPES:
        raise Refused(415, f"Content-Type must be one of {', '.join(BATCH_TYPES)}", "content-type")
    fmt = "ndjson" if content_type == BATCH_TYPES[0] else "json-array"
    try:
        tid = ingest.check_tid(request.headers.get(ingest.TID_HEADER), c.rules)
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    body = await read_body(request)
    try:
        lines, rows, signed = await anyio.to_thread.run_sync(
            _prepare_batch, body, content_type, tid, c, int(c.clock())
        )
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    stored, _ = await c.write(rows, signed) if rows else ({}, 0.0)

    results: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    accepted = duplicates = 0
    for line in lines:
        if line.row is None:
            status = "rejected"
            rejected.append({"line": line.line, "message": line.message})
        elif line.record_id in stored:
            status = "stored"
            accepted += 1
            del stored[str(line.record_id)]  # a later copy in this batch is a duplicate
        else:
            status = "duplicate"
            duplicates += 1
        results.append(
            {
                "line": line.line,
                "record_id": line.record_id,
                "status": status,
                "message": line.message,
            }
        )
    c.metrics.count_records(fmt, "stored", accepted)
    c.metrics.count_records(fmt, "duplicate", duplicates)
    c.metrics.count_records(fmt, "rejected", len(rejected))
    return JSONResponse(
        {"accepted": accepted, "duplicates": duplicates, "rejected": rejected, "results": results}
    )


def _prepare_batch(
    body: bytes, content_type: str, tid: str, c: Collector, now: int
) -> tuple[list[ingest.BatchLine], list[Row], Signed | None]:
    """In a worker thread: the batch's lines, its rows to store (the first of
    each record id) and their problems, which the writer thread need not read."""
    lines = _parse_batch(body, content_type, tid, c.rules, now)
    seen: set[str] = set()
    rows = []
    for line in lines:
        if line.row is not None and line.record_id not in seen:
            seen.add(str(line.record_id))
            rows.append(line.row)
    return lines, rows, c.store.sign(rows)


def _parse_batch(
    body: bytes, content_type: str, tid: str, rules: Rules, now: int
) -> list[ingest.BatchLine]:
    lines: list[ingest.BatchLine] = []
    for number, item in ingest.split_batch(body, content_type):
        if len(lines) == MAX_BATCH_RECORDS:
            raise FieldError(
                "body", f"a batch holds at most {MAX_BATCH_RECORDS} records", "too-large"
            )
        lines.append(ingest.parse_batch_line(number, item, tid=tid, rules=rules, now=now))
    return lines


async def list_records(request: Request) -> Response:
    """GET /api/records: a page of JSON, or with format=csv|ndjson the whole result."""
    c = collector_of(request)
    params = dict(query_of(request))
    try:
        fmt = choice("format", params.pop("format", "json"), RECORD_FORMATS)
        if fmt != "json" and "limit" in params:
            raise FieldError("limit", "pages JSON answers; an export streams the whole result")
        query = parse_query(params, c.clock())
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    if fmt != "json":
        # The first page is read before the answer starts, so that a database
        # failure can still be a 503 rather than a cut stream.
        page = export.first_page(query)
        rows = await c.read(c.store.records, page)
        return StreamingResponse(_export(c, fmt, page, rows), media_type=export.MEDIA_TYPES[fmt])
    rows = await c.read(c.store.records, query)
    records = [record_json(row) for row in rows]
    more = len(records) == query.limit
    return JSONResponse({"records": records, "next": records[-1]["id"] if more else None})


async def _export(
    c: Collector, fmt: str, page: RecordQuery, rows: list[tuple[Any, ...]]
) -> AsyncIterator[bytes]:
    """Pages of an export, one at a time; a failure cuts the stream short, noted in the log.

    The response then ends without its last chunk, which HTTP clients report
    as an incomplete body: a partial export cannot pass for a whole one.
    """
    yield export.header(fmt)
    sent = 0
    while True:
        yield await anyio.to_thread.run_sync(export.encode, fmt, rows)
        sent += len(rows)
        following = export.next_page(page, rows)
        if following is None:
            return
        page = following
        try:
            rows = await c.read(c.store.records, page)
        except Refused as exc:
            log.warning("%s export cut after %d records: %s", fmt, sent, exc.message)
            raise


async def summary(request: Request) -> Response:
    c = collector_of(request)
    since = query_of(request).get("since")
    try:
        moment = parse_since(since) if since else None
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    return JSONResponse(await c.read(c.store.summary, moment))


async def healthz(request: Request) -> Response:
    c = collector_of(request)
    try:
        await c.read(c.store.ping)
    except Refused as exc:
        return JSONResponse({"status": "unavailable", "message": exc.message}, status_code=503)
    return JSONResponse({"status": "ok", "engine": c.store.engine.name})


async def metrics(request: Request) -> Response:
    c = collector_of(request)
    try:
        stored = await c.read(c.store.stored_by_severity)
    except Refused:  # a database down is what the storage errors series reports
        stored = None
    text = c.metrics.render(stored)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def refusal(exc: Refused) -> Response:
    body: dict[str, str] = {"message": exc.message}
    if exc.field:
        body["field"] = exc.field
    return JSONResponse(body, status_code=exc.status)


async def refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return refusal(exc)


async def list_tokens(request: Request) -> Response:
    c = collector_of(request)
    infos = await c.read(token_store.list_tokens, c.store)
    return JSONResponse({"tokens": [info.json() for info in infos]})


# Every route names who may use it (see telemd.collector.access.guard); the
# ingest routes also take the token as the URL's last segment, for clients
# that can be given a URL but not a header.
ROUTES: list[BaseRoute] = [
    # A stream has no size bound; ingest_single bounds a record's body itself.
    GuardedRoute("/", ingest_root, methods=["POST"], access=Access.INGEST, max_body=UNBOUNDED),
    # The Go client's WebSocket.
    GuardedWebSocketRoute("/", WebSocketIngest(), access=Access.INGEST),
    GuardedWebSocketRoute(TOKEN_PATH, WebSocketIngest(), access=Access.INGEST),
    GuardedRoute(
        "/v2/collector", ingest_single, methods=["POST"], access=Access.INGEST, max_body=DRAIN_LIMIT
    ),
    GuardedRoute(
        "/v2/collector/{token}",
        ingest_single,
        methods=["POST"],
        access=Access.INGEST,
        max_body=DRAIN_LIMIT,
    ),
    GuardedRoute(
        "/api/v1/records",
        ingest_batch,
        methods=["POST"],
        access=Access.INGEST,
        max_body=DRAIN_LIMIT,
    ),
    GuardedRoute(
        "/api/v1/records/{token}",
        ingest_batch,
        methods=["POST"],
        access=Access.INGEST,
        max_body=DRAIN_LIMIT,
    ),
    GuardedRoute("/api/records", list_records, methods=["GET"], access=Access.READ),
    GuardedRoute("/api/v1/summary", summary, methods=["GET"], access=Access.READ),
    GuardedRoute(
        "/api/v1/problems", problem_routes.list_problems, methods=["GET"], access=Access.READ
    ),
    GuardedRoute(
        "/api/v1/problems/{id}", problem_routes.show_problem, methods=["GET"], access=Access.READ
    ),
    GuardedRoute("/api/v1/builds", problem_routes.list_builds, methods=["GET"], access=Access.READ),
    GuardedRoute("/api/v1/overview", problem_routes.overview, methods=["GET"], access=Access.READ),
    GuardedRoute("/api/v1/tokens", list_tokens, methods=["GET"], access=Access.ADMIN),
    GuardedRoute("/healthz", healthz, methods=["GET"], access=Access.OPEN),
    GuardedRoute("/metrics", metrics, methods=["GET"], access=Access.READ),
    *EVENT_ROUTES,
    GuardedRoute(
        TOKEN_PATH, ingest_root, methods=["POST"], access=Access.INGEST, max_body=UNBOUNDED
    ),
    *CONSOLE_ROUTES,
]
ROUTE_PATHS = frozenset(route.path for route in ROUTES if isinstance(route, GuardedRoute))


def route_path(path: str) -> str | None:
    """The route table's path that `path` matches: `/api/v1/problems/{id}` for `.../7`."""
    if path in ROUTE_PATHS:
        return path
    return next(
        (
            route.path
            for route in ROUTES
            if isinstance(route, GuardedRoute) and route.path_regex.fullmatch(path)
        ),
        None,
    )


QUERY_KEY = "telemd.query"


def query_of(request: Request) -> dict[str, str]:
    """The request's query parameters, as CheckedQuery read and checked them."""
    query: dict[str, str] = request.scope[QUERY_KEY]
    return query


class CheckedQuery:
    """ASGI middleware: every route's query string through `params.read_query`.

    A route takes the parameters ROUTE_PARAMS names for it and no others;
    anything else is answered 400 here, before the route runs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_path(scope["path"]) if scope["type"] == "http" else None
        if route is not None:
            allowed = ROUTE_PARAMS.get(route, ())
            try:
                scope[QUERY_KEY] = read_query(scope["query_string"], allowed)
            except FieldError as exc:
                await refusal(Refused.from_field(exc))(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Timing:
    """ASGI middleware: request latency per route into the metrics."""

    def __init__(self, app: ASGIApp, collector: Collector) -> None:
        self.app = app
        self.metrics = collector.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = route_path(scope["path"]) or "other"
            self.metrics.observe_request(scope["method"], route, time.perf_counter() - start)


def make_guard(collector: Collector) -> Guard:
    async def find(digest: str) -> TokenInfo | None:
        info: TokenInfo | None = await collector.read(token_store.find, collector.store, digest)
        return info

    async def touch(name: str) -> None:
        try:
            await collector.writer.call(
                lambda: token_store.touch(collector.store, name, collector.clock())
            )
        except StorageError as exc:  # a use not noted is no reason to refuse the request
            log.warning("could not note the use of token %r: %s", name, exc.message)

    return Guard(
        ingest_auth=collector.config.ingest_auth,
        ingest_rate=collector.config.ingest_rate_limit,
        find=find,
        touch=touch,
        session=console_auth.admit,
    )


def create_app(collector: Collector) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        collector.writer.start()
        purge = None
        if collector.retention.days or collector.retention.overrides:
            purge = asyncio.create_task(collector.purge_forever())
        try:
            yield
        finally:
            if purge is not None:
                purge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purge
            await anyio.to_thread.run_sync(collector.writer.stop)

    app = Starlette(
        routes=ROUTES, exception_handlers={Refused: refused, Denied: denied}, lifespan=lifespan
    )
    app.state.collector = collector
    app.state.guard = make_guard(collector)
    return Timing(CheckedQuery(app), collector)
