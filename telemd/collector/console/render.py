"""Templates to HTML responses, with the headers every console page carries.

The Content-Security-Policy allows nothing but the console's own stylesheet
and forms: no script, no inline style, nothing from another site, so an
injected string could neither run nor load anything even if escaping failed.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from telemd.collector.console import charts
from telemd.collector.store.query import iso_utc

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
START_KEY = "telemd.console.start"

_environment = jinja2.Environment(
    loader=jinja2.PackageLoader("telemd.collector.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.globals["charts"] = charts
_environment.filters["when"] = lambda seconds: iso_utc(seconds)[:19].replace("T", " ")

STYLESHEET = resources.files("telemd.collector.console").joinpath("static/console.css").read_bytes()


def started(request: Request) -> None:
    """Note when the page began, for the server time its footer shows."""
    request.scope[START_KEY] = time.perf_counter()


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    start = request.scope.get(START_KEY, time.perf_counter())
    context.setdefault("session", getattr(request.state, "console_session", None))
    context["elapsed_ms"] = lambda: f"{(time.perf_counter() - start) * 1000:.1f}"
    html = _environment.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def stylesheet(request: Request) -> Response:
    return Response(
        STYLESHEET,
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
