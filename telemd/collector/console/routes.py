"""The console's routes, each with its access: pages need a session, login does not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from telemd.collector.access.guard import Access, GuardedRoute
from telemd.collector.console import auth, pages, render


async def show_login(request: Request) -> Response:
    return await auth.login_form(request)


async def stylesheet(request: Request) -> Response:
    return render.stylesheet(request)


def _page(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> GuardedRoute:
    return GuardedRoute(path, endpoint, methods=["GET"], access=Access.SESSION)


CONSOLE_ROUTES = [
    GuardedRoute("/", pages.root, methods=["GET"], access=Access.OPEN),
    GuardedRoute("/console/static/console.css", stylesheet, methods=["GET"], access=Access.OPEN),
    GuardedRoute("/console/login", show_login, methods=["GET"], access=Access.OPEN),
    GuardedRoute(
        "/console/login", auth.login, methods=["POST"], access=Access.OPEN, max_body=auth.MAX_FORM
    ),
    GuardedRoute(
        "/console/logout",
        auth.logout,
        methods=["POST"],
        access=Access.SESSION,
        max_body=auth.MAX_FORM,
    ),
    _page("/console/", pages.overview),
    _page("/console/problems", pages.problems),
    _page("/console/problems/{problem_id}", pages.problem),
    _page("/console/builds", pages.builds),
    _page("/console/records", pages.records),
    _page("/console/records.csv", pages.export_csv),
    _page("/console/records.ndjson", pages.export_ndjson),
    _page("/console/records/{record_id}", pages.record),
    _page("/console/machines/{machine_id}", pages.machine),
    _page("/console/apps", pages.apps),
    _page("/console/apps/tail", pages.tail),
]
