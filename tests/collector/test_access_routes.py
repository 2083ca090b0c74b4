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
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from access_tokens import ALL_SCOPES, make_token
from collector_proc import BATCH_HEADERS, CollectorProcess, headers_request, ndjson, new_id, record

from telemd.collector.access.guard import Access, GuardedRoute, GuardedWebSocketRoute
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


def one_event() -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/json"}, b'[{"app": "' + new_id().encode() + b'"}]'


# A body maker for every route of the table, by method and path.
REQUESTS: dict[tuple[str, str], Any] = {
    ("POST", "/"): ingest_one,
    ("POST", "/{token:token}"): ingest_one,
    ("POST", "/v2/collector"): ingest_one,
    ("POST", "/v2/collector/{token}"): ingest_one,
    ("POST", "/api/v1/records"): ingest_batch,
    ("POST", "/api/v1/records/{token}"): ingest_batch,
    ("GET", "/api/records"): nothing,
    ("GET", "/api/v1/summary"): nothing,
    ("GET", "/api/v1/problems"): nothing,
    ("GET", "/api/v1/problems/{id}"): nothing,
    ("GET", "/api/v1/builds"): nothing,
    ("GET", "/api/v1/overview"): nothing,
    ("GET", "/api/v1/tokens"): nothing,
    ("GET", "/healthz"): nothing,
    ("GET", "/metrics"): nothing,
    ("POST", "/publish"): one_event,
    ("POST", "/publish/{token}"): one_event,
    ("GET", "/publish"): nothing,
    ("POST", "/api/v1/telemetry/upload"): one_event,
    ("POST", "/api/v1/telemetry/upload/{token}"): one_event,
    ("GET", "/api/v1/telemetry"): nothing,
    ("POST", "/api/v1/events"): one_event,
    ("POST", "/api/v1/events/{token}"): one_event,
    ("GET", "/api/v1/events"): nothing,
}
# Open to anyone: the health check, and shuttle's availability check.
OPEN = {("GET", "/healthz"), ("GET", "/publish")}


def key(route: GuardedRoute) -> tuple[str, str]:
    (method,) = sorted((route.methods or set()) - {"HEAD"})
    return method, route.path


def test_every_route_declares_its_access_and_is_tried_here() -> None:
    """WebSocket routes are tried in test_jsonstream_websocket.py."""
    for route in CONSOLE_ROUTES:
        assert isinstance(route, GuardedRoute), f"{route.path} has no access rule"
        if route.access is not Access.SESSION:
            assert route.access is Access.OPEN and route.path in CONSOLE_OPEN, route.path
    for route in API_ROUTES:
        assert isinstance(route, GuardedRoute | GuardedWebSocketRoute), (
            f"{route} has no access rule"
        )
        assert isinstance(route.access, Access), route.path
        if isinstance(route, GuardedWebSocketRoute):
            assert route.access is Access.INGEST, route.path
            continue
        assert key(route) in REQUESTS, f"{key(route)}: add it to REQUESTS"
        if route.access is Access.OPEN:
            assert key(route) in OPEN, f"{route.path} is open to anyone: is that meant?"
        if "{token" in route.path:
            assert route.access is Access.INGEST, "only ingest takes a token in the URL"
    assert set(REQUESTS) == {key(route) for route in API_ROUTES if isinstance(route, GuardedRoute)}


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


def attempt(proc: CollectorProcess, method: str, path: str, token: str | None) -> httpx.Response:
    headers, body = REQUESTS[method, path]()
    url = path.replace("{id}", "1")
    if "{token" in path:
        # The token rides in the URL; "no token" is a made-up one there.
        url = re.sub(r"\{token(:token)?\}", token or new_token(), path)
        token = None
    with proc.client(token=token, source=source()) as client:
        return client.request(method, url, headers=headers, content=body)


@pytest.mark.parametrize(("method", "path"), sorted(REQUESTS))
def test_no_token_wrong_scope_revoked_and_right_scope(
    guarded: tuple[CollectorProcess, Tokens], method: str, path: str
) -> None:
    proc, tokens = guarded
    [route] = [r for r in API_ROUTES if isinstance(r, GuardedRoute) and key(r) == (method, path)]
    assert isinstance(route, GuardedRoute)
    if route.access is Access.OPEN:
        for token in (None, tokens.revoked, tokens.right["read"]):
            assert attempt(proc, method, path, token).status_code == 200
        return
    scope = SCOPE_OF[route.access]
    none = attempt(proc, method, path, None)
    assert none.status_code == 401, none.text
    assert "message" in none.json()
    if "{token" not in path:
        assert none.headers["www-authenticate"].startswith("Bearer")
    wrong = attempt(proc, method, path, tokens.wrong[scope])
    assert wrong.status_code == 403, wrong.text
    assert f"lacks the {scope} scope" in wrong.json()["message"]
    revoked = attempt(proc, method, path, tokens.revoked)
    assert revoked.status_code == 401, revoked.text
    right = attempt(proc, method, path, tokens.right[scope])
    if "{id}" in path:  # past the guard, to a problem this empty database lacks
        assert right.status_code == 404 and right.json()["field"] == "id", right.text
    else:
        assert right.status_code in (200, 201), right.text
    log = proc.log()
    for token in (tokens.revoked, *tokens.right.values(), *tokens.wrong.values()):
        assert token not in log
