"""The problems routes: problems, one problem, builds and the overview (read scope).

Thin: parameters through `server.params`, answers from `problems.queries`,
which reads the counts kept at ingest. Registered in `server/app.py`'s ROUTES.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from telemd.collector.ingest.records import FieldError
from telemd.collector.problems import queries
from telemd.collector.problems.queries import MAX_LIMIT, parse_problem_query, problem_id

# The app module imports this one for its route table; its names are looked up per call.
from telemd.collector.server import app as server
from telemd.collector.server import params
from telemd.collector.server.http import JSONResponse, Refused


async def list_problems(request: Request) -> Response:
    c = server.collector_of(request)
    try:
        query = parse_problem_query(server.query_of(request))
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    return JSONResponse(await c.read(queries.list_problems, c.store, query))


async def show_problem(request: Request) -> Response:
    c = server.collector_of(request)
    number = problem_id(request.path_params["id"])
    detail = await c.read(queries.problem_detail, c.store, number) if number else None
    if detail is None:
        raise Refused(404, f"no problem {request.path_params['id'][:40]!r}", "id")
    return JSONResponse(detail)


async def list_builds(request: Request) -> Response:
    c = server.collector_of(request)
    values = server.query_of(request)
    try:
        limit = params.integer("limit", values["limit"], 1, MAX_LIMIT) if "limit" in values else 100
    except FieldError as exc:
        raise Refused.from_field(exc) from None
    return JSONResponse(await c.read(queries.list_builds, c.store, limit, c.clock()))


async def overview(request: Request) -> Response:
    c = server.collector_of(request)
    return JSONResponse(await c.read(queries.overview, c.store, c.clock()))
