"""The console's pages: each reads what it shows in a worker thread, then renders.

Query parameters arrive checked by the app's CheckedQuery layer (the names
of `params.ROUTE_PARAMS`); a value that fails its check re-renders the page
with the message and status 400. Path parameters are checked here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from telemd.collector import json_codec
from telemd.collector.console import data, render
from telemd.collector.events.query import EventQuery, find_events
from telemd.collector.ingest.records import FieldError
from telemd.collector.problems import queries as problem_queries
from telemd.collector.problems.queries import ProblemQuery, parse_problem_query
from telemd.collector.server.http import Refused
from telemd.collector.server.params import integer
from telemd.collector.store.query import SELECT_COLUMNS, parse_query, record_json
from telemd.record import HEADER_NAMES, is_event_id

EXPORT_PAGE = 1000
RECENT_FAILURES = 20
TAIL_EVENTS = 50
TAIL_REFRESH_SECONDS = 5
# An export is a search's records, not a backup: beyond this, narrow the search.
EXPORT_MAX = 100_000
# A spreadsheet runs a cell that starts with these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _collector(request: Request) -> Any:
    return request.app.state.collector


def _query(request: Request) -> dict[str, str]:
    query: dict[str, str] = request.scope.get("telemd.query", {})
    return query


async def root(request: Request) -> Response:
    """GET /: a browser is sent to the console; anything else is told what / takes."""
    accept = request.headers.get("accept", "")
    is_client = any(name in request.headers for name in ("x-telemetry-tid", "classification"))
    if "text/html" in accept and not is_client:
        return RedirectResponse("/console/", status_code=303)
    raise Refused(405, "/ takes records by POST; the console is at /console/")


async def overview(request: Request) -> Response:
    c = _collector(request)
    now = c.clock()
    summary = await c.read(problem_queries.overview, c.store, now)
    per_day, machines = data.overview_series(summary, now)
    return render.page(
        request, "overview.html", overview=summary, per_day=per_day, machines=machines,
        top_days=problem_queries.TOP_DAYS,
    )  # fmt: skip


def _problem_query(given: dict[str, str], now: float) -> ProblemQuery:
    """The problems form's values as the problems API's query."""
    values: dict[str, str] = {
        k: v for k, v in given.items() if k in ("kind", "build", "sort", "after")
    }
    if "days" in given:
        days = integer("days", given["days"], 1, 100_000)
        values["since"] = str(int(now) - days * 86400)
    return parse_problem_query(values)


async def problems(request: Request) -> Response:
    c = _collector(request)
    given = _query(request)
    try:
        query = _problem_query(given, c.clock())
    except FieldError as exc:
        return render.page(request, "error.html", 400, message=f"{exc.field} {exc.message}")
    found = await c.read(problem_queries.list_problems, c.store, query)
    ids = [problem["id"] for problem in found["problems"]]
    sparks = await c.read(data.problem_days, c.store, ids, c.clock(), data.SPARK_DAYS)
    next_link = "?" + urlencode({**given, "after": found["next"]}) if found["next"] else None
    return render.page(
        request, "problems.html", problems=found["problems"], sparks=sparks, form=given,
        kinds=problem_queries.KINDS, sorts=problem_queries.SORTS, next_link=next_link,
        spark_days=data.SPARK_DAYS,
    )  # fmt: skip


async def problem(request: Request) -> Response:
    c = _collector(request)
    number = problem_queries.problem_id(request.path_params["problem_id"])
    detail = await c.read(problem_queries.problem_detail, c.store, number) if number else None
    if detail is None:
        return render.page(request, "error.html", 404, message="no problem with that id")
    per_day = data.detail_series(detail, c.clock(), problem_queries.DETAIL_DAYS)
    return render.page(request, "problem.html", detail=detail, p=detail["problem"], per_day=per_day)


async def builds(request: Request) -> Response:
    c = _collector(request)
    found = await c.read(problem_queries.list_builds, c.store, data.MAX_ROWS, c.clock())
    return render.page(request, "builds.html", builds=found["builds"])


async def records(request: Request) -> Response:
    c = _collector(request)
    given = _query(request)
    try:
        query = parse_query(given, c.clock())
    except FieldError as exc:
        return render.page(
            request, "records.html", 400, form=given, rows=[], next_link=None,
            error=f"{exc.field} {exc.message}",
        )  # fmt: skip
    rows = [record_json(row) for row in await c.read(c.store.records, query)]
    next_link = None
    if len(rows) == query.limit:
        next_link = "?" + urlencode({**given, "before": rows[-1]["id"]})
    return render.page(
        request, "records.html", form=given, rows=rows, next_link=next_link, error=""
    )


async def record(request: Request) -> Response:
    c = _collector(request)
    record_id = request.path_params["record_id"]
    row = await c.read(c.store.record, record_id) if is_event_id(record_id) else None
    if row is None:
        return render.page(request, "error.html", 404, message="no record with that id")
    return render.page(request, "record.html", record=record_json(row), headers=HEADER_NAMES)


async def machine(request: Request) -> Response:
    c = _collector(request)
    machine_id = request.path_params["machine_id"]
    if not 0 < len(machine_id) <= 256 or not machine_id.isprintable():
        return render.page(request, "error.html", 404, message="no machine with that id")
    now = c.clock()
    per_day = await c.read(data.machine_records_per_day, c.store, machine_id, now)
    kinds = await c.read(data.machine_kinds, c.store, machine_id, data.MAX_ROWS)
    problems = await c.read(data.machine_problems, c.store, machine_id, data.MAX_ROWS)
    query = parse_query({"machine_id": machine_id, "limit": "20"}, now)
    recent = [record_json(row) for row in await c.read(c.store.records, query)]
    return render.page(
        request, "machine.html", machine_id=machine_id, per_day=per_day, kinds=kinds,
        problems=problems, recent=recent,
    )  # fmt: skip


async def apps(request: Request) -> Response:
    c = _collector(request)
    failures = c.config.failure_events
    totals = await c.read(data.app_totals, c.store, failures, data.MAX_ROWS)
    query = EventQuery(level="error", limit=RECENT_FAILURES)
    recent = await c.read(find_events, c.store, query, failures)
    return render.page(request, "apps.html", totals=totals, recent=recent)


async def tail(request: Request) -> Response:
    """The latest events, newest first; the page reloads itself (no script needed)."""
    c = _collector(request)
    given = _query(request)
    query = EventQuery(source=given.get("source"), app=given.get("app"), limit=TAIL_EVENTS)
    found = await c.read(find_events, c.store, query, c.config.failure_events)
    return render.page(request, "tail.html", events=found, form=given, refresh=TAIL_REFRESH_SECONDS)


def _cell(value: object) -> str:
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def _export(request: Request, fmt: str) -> Response:
    c = _collector(request)
    given = _query(request)
    try:
        query = parse_query({**given, "limit": str(EXPORT_PAGE)}, c.clock())
    except FieldError as exc:
        return render.page(request, "error.html", 400, message=f"{exc.field} {exc.message}")

    async def chunks() -> AsyncIterator[bytes]:
        page = query
        sent = 0
        if fmt == "csv":
            yield _csv_line(SELECT_COLUMNS)
        while sent < EXPORT_MAX:
            rows = await c.read(c.store.records, page)
            for row in rows:
                item = record_json(row)
                if fmt == "csv":
                    yield _csv_line([_cell(item[name]) for name in SELECT_COLUMNS])
                else:
                    yield json_codec.dumps(item) + b"\n"
            sent += len(rows)
            if len(rows) < page.limit:
                break
            page = dataclasses.replace(page, before=int(rows[-1][0]))

    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    disposition = f'attachment; filename="records.{fmt}"'
    return StreamingResponse(
        chunks(), media_type=media, headers={"Content-Disposition": disposition}
    )


def _csv_line(values: Any) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerow(values)
    return out.getvalue().encode()


async def export_csv(request: Request) -> Response:
    return await _export(request, "csv")


async def export_ndjson(request: Request) -> Response:
    return await _export(request, "ndjson")
