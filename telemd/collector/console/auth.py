"""Login, logout and the session check of every console page.

Login takes a token with the read scope and answers with a session cookie
(HttpOnly, SameSite=Strict, Secure under HTTPS); a failed login counts
against the address like any failed authentication (the guard's limit).
Every form carries a CSRF token, checked before anything is done.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from telemd.collector.access import token_store
from telemd.collector.access.guard import Denied, Guard
from telemd.collector.access.tokens import token_hash, well_formed
from telemd.collector.console import render, sessions
from telemd.collector.ingest.records import FieldError
from telemd.collector.server.http import Refused, read_body
from telemd.collector.server.params import read_query

LOGIN_PATH = "/console/login"
HOME_PATH = "/console/"
# A login form is a token and a CSRF token: a few hundred bytes.
MAX_FORM = 4096
COOKIE_PATH = "/console"


def _collector(request: Request) -> Any:
    return request.app.state.collector


async def admit(request: Request) -> None:
    """The guard's check of Access.SESSION routes: a live session, or off to log in."""
    render.started(request)
    secret = request.cookies.get(sessions.SESSION_COOKIE)
    found = None
    if secret:
        c = _collector(request)
        found = await c.read(sessions.find, c.store, secret, c.clock())
    if found is None:
        raise Denied(303, f"log in at {LOGIN_PATH}", {"Location": LOGIN_PATH})
    request.state.console_session = found


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def read_form(request: Request, fields: tuple[str, ...]) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != (
        "application/x-www-form-urlencoded"
    ):
        raise Refused(415, "a console form is application/x-www-form-urlencoded", "content-type")
    body = await read_body(request, MAX_FORM)
    try:
        return read_query(body, fields)
    except FieldError as exc:
        raise Refused(400, f"{exc.field}: {exc.message}", exc.field) from None


async def login_form(request: Request, error: str = "", status: int = 200) -> Response:
    """The login page, with a fresh CSRF cookie its form repeats."""
    csrf = sessions.new_secret()
    response = render.page(request, "login.html", status, csrf=csrf, error=error)
    _set_cookie(request, response, sessions.LOGIN_COOKIE, csrf, sessions.SESSION_SECONDS)
    return response


async def login(request: Request) -> Response:
    c = _collector(request)
    guard: Guard = request.app.state.guard
    form = await read_form(request, ("token", "csrf"))
    expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    if not expected or not sessions.same(form.get("csrf", ""), expected):
        return await login_form(request, "The form expired: log in again.", 403)
    address = request.client.host if request.client else "unknown"
    if guard.failures.would_wait(address):
        return await login_form(request, "Too many failed logins: wait a minute.", 429)
    token = form.get("token", "").strip()
    info = None
    if well_formed(token):
        info = await c.read(token_store.find, c.store, token_hash(token))
    if not sessions.can_log_in(info):
        guard.failed(address, LOGIN_PATH, "console login with a token that cannot read")
        return await login_form(request, "That token is unknown, revoked or cannot read.", 401)
    secret = await c.writer.call(lambda: sessions.create(c.store, token, c.clock()))
    response = RedirectResponse(HOME_PATH, status_code=303)
    _set_cookie(request, response, sessions.SESSION_COOKIE, secret, sessions.SESSION_SECONDS)
    response.delete_cookie(sessions.LOGIN_COOKIE, path=COOKIE_PATH)
    return response


async def logout(request: Request) -> Response:
    c = _collector(request)
    session: sessions.ConsoleSession = request.state.console_session
    form = await read_form(request, ("csrf",))
    if not sessions.same(form.get("csrf", ""), session.csrf):
        raise Denied(403, "the form's CSRF token is missing or wrong: reload the page")
    secret = request.cookies[sessions.SESSION_COOKIE]
    await c.writer.call(lambda: sessions.end(c.store, secret))
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(sessions.SESSION_COOKIE, path=COOKIE_PATH)
    return response
