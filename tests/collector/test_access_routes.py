"""Every route declares who may use it, and each one holds to it over real HTTPS.

The route table is walked: a route without an access rule, or one this test
has no request for, fails here. Each route is then tried with no token, a
token lacking its scope, a revoked token and the right token, on SQLite and
PostgreSQL, against a collector whose ingest needs a token. Each try comes
from its own loopback address, so that the failed authentications of one
do not count against the next.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from access_tokens import ALL_SCOPES, make_token
from collector_proc import BATCH_HEADERS, CollectorProcess, headers_request, ndjson, new_id, record

from telemd.collector.access.guard import Access, GuardedRoute
from telemd.collector.access.tokens import new_token
from telemd.collector.cli import main as collector_main
from telemd.collector.console.routes import CONSOLE_ROUTES
from telemd.collector.server.app import ROUTES

# The console's routes take a session, not a token: test_console_access tries them.
API_ROUTES = [route for route in ROUTES if route not in CONSOLE_ROUTES]
CONSOLE_OPEN = {"/", "/console/login", "/console/static/console.css"}

SCOPE_OF = {Access.INGEST: "ingest", Access.READ: "read", Access.ADMIN: "admin"}
_addresses = itertools.count(2)


def source() -> str:
    n = next(_addresses)
    return f"127.0.{n // 250}.{n % 250 + 2}"


def ingest_one() -> tuple[dict[str, str], bytes]:
    return headers_request(record(machine_id=new_id()))


def ingest_batch() -> tuple[dict[str, str], bytes]:
    return BATCH_HEADERS, ndjson([record(machine_id=new_id())])


def nothing() -> tuple[dict[str, str], bytes]:
    return {}, b""


# (method, body maker) for every route of the table, by its path.
REQUESTS: dict[str, tuple[str, Any]] = {
    "/": ("POST", ingest_one),
    "/v2/collector": ("POST", ingest_one),
    "/v2/collector/{token}": ("POST", ingest_one),
    "/api/v1/records": ("POST", ingest_batch),
    "/api/v1/records/{token}": ("POST", ingest_batch),
    "/api/records": ("GET", nothing),
    "/api/v1/summary": ("GET", nothing),
    "/api/v1/problems": ("GET", nothing),
    "/api/v1/problems/{id}": ("GET", nothing),
    "/api/v1/builds": ("GET", nothing),
    "/api/v1/overview": ("GET", nothing),
    "/api/v1/tokens": ("GET", nothing),
    "/healthz": ("GET", nothing),
    "/metrics": ("GET", nothing),
}


def test_every_route_declares_its_access_and_is_tried_here() -> None:
    for route in CONSOLE_ROUTES:
        assert isinstance(route, GuardedRoute), f"{route.path} has no access rule"
        if route.access is not Access.SESSION:
            assert route.access is Access.OPEN and route.path in CONSOLE_OPEN, route.path
    for route in API_ROUTES:
        assert isinstance(route, GuardedRoute), f"{route.path} has no access rule"
        assert isinstance(route.access, Access), route.path
        assert route.path in REQUESTS, f"{route.path}: add it to REQUESTS"
        if route.access is Access.OPEN:
            assert route.path == "/healthz", f"{route.path} is open to anyone: is that meant?"
        if "{token}" in route.path:
            assert route.access is Access.INGEST, "only ingest takes a token in the URL"
    assert set(REQUESTS) == {route.path for route in API_ROUTES}


class Tokens:
    def __init__(self, db_url: str) -> None:
        self.right = {s: make_token(db_url, f"only-{s}", [s]) for s in ALL_SCOPES}
        self.wrong = {
            s: make_token(db_url, f"all-but-{s}", [o for o in ALL_SCOPES if o != s])
            for s in ALL_SCOPES
        }
        self.revoked = make_token(db_url, "revoked", ALL_SCOPES)
        assert collector_main(["token", "revoke", "revoked", "--db", db_url]) == 0


@pytest.fixture(scope="module")
def guarded(
    engine: str,
    new_db_url: Any,
    tmp_path_factory: pytest.TempPathFactory,
    tls_files: tuple[str, str, str],
) -> Iterator[tuple[CollectorProcess, Tokens]]:
    db_url = new_db_url(engine)
    tokens = Tokens(db_url)
    proc = CollectorProcess(
        db_url,
        str(tmp_path_factory.mktemp("guarded")),
        tls=tls_files,
        args=["--ingest-auth", "token"],
    )
    try:
        yield proc.wait_ready(), tokens
    finally:
        proc.stop()


def attempt(proc: CollectorProcess, path: str, token: str | None) -> httpx.Response:
    method, make = REQUESTS[path]
    headers, body = make()
    url = path.replace("{id}", "1")
    if "{token}" in path:
        # The token rides in the URL; "no token" is a made-up one there.
        url = path.replace("{token}", token or new_token())
        token = None
    with proc.client(token=token, source=source()) as client:
        return client.request(method, url, headers=headers, content=body)


@pytest.mark.parametrize("path", sorted(REQUESTS))
def test_no_token_wrong_scope_revoked_and_right_scope(
    guarded: tuple[CollectorProcess, Tokens], path: str
) -> None:
    proc, tokens = guarded
    [route] = [r for r in API_ROUTES if r.path == path]
    assert isinstance(route, GuardedRoute)
    if route.access is Access.OPEN:
        for token in (None, tokens.revoked, tokens.right["read"]):
            assert attempt(proc, path, token).status_code == 200
        return
    scope = SCOPE_OF[route.access]
    none = attempt(proc, path, None)
    assert none.status_code == 401, none.text
    assert "message" in none.json()
    if "{token}" not in path:
        assert none.headers["www-authenticate"].startswith("Bearer")
    wrong = attempt(proc, path, tokens.wrong[scope])
    assert wrong.status_code == 403, wrong.text
    assert f"lacks the {scope} scope" in wrong.json()["message"]
    revoked = attempt(proc, path, tokens.revoked)
    assert revoked.status_code == 401, revoked.text
    right = attempt(proc, path, tokens.right[scope])
    if "{id}" in path:  # past the guard, to a problem this empty database lacks
        assert right.status_code == 404 and right.json()["field"] == "id", right.text
    else:
        assert right.status_code in (200, 201), right.text
    log = proc.log()
    for token in (tokens.revoked, *tokens.right.values(), *tokens.wrong.values()):
        assert token not in log
