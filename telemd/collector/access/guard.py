"""The access rule of every route, applied before its handler runs.

Each route of the app is a `GuardedRoute` and names its `Access`: a route
cannot be made without one. Before the handler, the guard checks, in order:
failed authentications of the address (429), the token (401 unknown, 403
lacking the scope), ingest's own rule (`ingest_auth`: none, token, mtls),
the client's ingest rate (429 with Retry-After) and the body size (413).

A token is looked up by its hash through a cache of one second, so a token
revoked by `telemd-collector token revoke` in another process stops working
within a second. Nothing here logs a token or a path (a path may hold one):
only the route, the address and, when known, the token's name.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from telemd.collector.access.limits import RateLimiter, retry_after
from telemd.collector.access.tokens import Scope, TokenInfo, bearer, token_hash, well_formed

log = logging.getLogger("telemd.collector.access")

CACHE_SECONDS = 1.0
MAX_CACHED = 4096
# A use is written back at most this often per token: a write per request
# would cost the writer thread more than the request itself.
TOUCH_INTERVAL = 60.0
# Failed authentications per address: 10 at once, then one every 6 seconds.
FAILURE_BURST = 10
FAILURE_RATE = 1 / 6
AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="telemd-collector"'}


class Access(enum.Enum):
    OPEN = "open"  # anyone: /healthz
    INGEST = "ingest"  # open, or an ingest token / client certificate (ingest_auth)
    READ = "read"  # a token with the read scope
    ADMIN = "admin"  # a token with the admin scope
    SESSION = "session"  # a console login made from a read token (telemd.collector.console)


SCOPE_OF = {Access.INGEST: Scope.INGEST, Access.READ: Scope.READ, Access.ADMIN: Scope.ADMIN}


class Denied(Exception):
    """Answer with `status`, {"message": ...} and `headers`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class GuardedRoute(Route):
    """A route with its access rule and body limit, checked before the handler."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[[Request], Awaitable[Response]],
        *,
        methods: list[str],
        access: Access,
        max_body: int = 0,
    ) -> None:
        self.access = access
        self.max_body = max_body

        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            guard: Guard = request.app.state.guard
            await guard.admit(request, self.path, access, max_body)
            return await endpoint(request)

        super().__init__(path, guarded, methods=methods)


class GuardedWebSocketRoute(WebSocketRoute):
    """A WebSocket route (an ASGI app) with its access rule, checked before the handshake."""

    def __init__(self, path: str, app: ASGIApp, *, access: Access) -> None:
        self.access = access
        self.max_body = 0
        super().__init__(path, _GuardedWebSocket(path, app, access))


class _GuardedWebSocket:
    # A class, not a function: Starlette hands a function a WebSocket object.
    def __init__(self, path: str, app: ASGIApp, access: Access) -> None:
        self.path = path
        self.app = app
        self.access = access

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        guard: Guard = scope["app"].state.guard
        try:
            await guard.admit(HTTPConnection(scope), self.path, self.access, 0)
        except Denied as exc:
            await deny_websocket(scope, send, exc)
            return
        await self.app(scope, receive, send)


async def deny_websocket(scope: AsgiScope, send: Send, exc: Denied) -> None:
    """Refuse a handshake with the status and message, where the server can say them."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
        return
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "websocket.http.response.start", "status": exc.status, "headers": headers})
    body = json.dumps({"message": exc.message}).encode()
    await send({"type": "websocket.http.response.body", "body": body})


def client_cert_name(scope: AsgiScope) -> str | None:
    """The subject of the connection's verified client certificate (see `mtls`)."""
    name = scope.get("extensions", {}).get("tls", {}).get("client_cert_name")
    return name if isinstance(name, str) else None


class Guard:
    def __init__(
        self,
        *,
        ingest_auth: str,
        ingest_rate: float,
        find: Callable[[str], Awaitable[TokenInfo | None]],
        touch: Callable[[str], Awaitable[None]],
        session: Callable[[Request], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`session` admits a request to an Access.SESSION route or raises Denied."""
        self.ingest_auth = ingest_auth
        self.session = session
        self.find = find
        self.touch = touch
        self.clock = clock
        self.failures = RateLimiter(FAILURE_RATE, FAILURE_BURST, clock)
        # A burst of twice the rate, and at least one request, however low the rate.
        burst = max(1.0, 2 * ingest_rate)
        self.ingest = RateLimiter(ingest_rate, burst, clock) if ingest_rate else None
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}
        self._touched: dict[str, float] = {}

    async def admit(
        self, request: HTTPConnection, route: str, access: Access, max_body: int
    ) -> None:
        if access is Access.SESSION:
            if self.session is None:
                raise Denied(404, f"{route} is not served here")
            assert isinstance(request, Request)  # console pages are HTTP routes
            await self.session(request)
        elif access is not Access.OPEN:
            info = await self.authenticate(request, route)
            if access is Access.INGEST:
                self.admit_ingest(request, info)
            elif info is None:
                raise Denied(
                    401, f"{route} needs a token: Authorization: Bearer TOKEN", AUTHENTICATE
                )
            if info is not None:
                needed = SCOPE_OF[access]
                if needed not in info.scopes:
                    raise Denied(403, f"token {info.name!r} lacks the {needed.value} scope")
                await self.note_use(info)
        check_body_size(request, max_body)

    async def authenticate(self, request: HTTPConnection, route: str) -> TokenInfo | None:
        """The presented token's record; None when none was presented; 401/429 if bad."""
        token = bearer(request.headers.get("authorization"))
        if token is None:
            token = request.path_params.get("token")
        if token is None:
            return None
        address = request.client.host if request.client else "unknown"
        wait = self.failures.would_wait(address)
        if wait:
            raise Denied(
                429,
                "too many failed authentications from this address",
                {"Retry-After": retry_after(wait)},
            )
        info = await self.lookup(token) if well_formed(token) else None
        if info is None:
            self.failed(
                address,
                route,
                "unknown or revoked token" if well_formed(token) else "malformed token",
            )
            raise Denied(401, "unknown or revoked token", AUTHENTICATE)
        return info

    def admit_ingest(self, request: HTTPConnection, info: TokenInfo | None) -> None:
        cert = client_cert_name(request.scope)
        if self.ingest_auth == "token" and info is None:
            raise Denied(
                401,
                "this collector takes records only with an ingest token: "
                "Authorization: Bearer TOKEN, or the token as the URL's last segment",
                AUTHENTICATE,
            )
        if self.ingest_auth == "mtls" and cert is None:
            raise Denied(
                401, "this collector takes records only over TLS with a client certificate"
            )
        if self.ingest is None:
            return
        if info is not None:
            client = f"token {info.name}"
        elif cert is not None:
            client = f"certificate {cert}"
        else:
            client = f"address {request.client.host if request.client else 'unknown'}"
        wait = self.ingest.take(client)
        if wait:
            raise Denied(
                429,
                f"ingest limit of {self.ingest.rate:g} requests/s per client: retry later",
                {"Retry-After": retry_after(wait)},
            )

    async def lookup(self, token: str) -> TokenInfo | None:
        digest = token_hash(token)
        now = self.clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        info = await self.find(digest)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, info)
        return info

    def failed(self, address: str, route: str, reason: str) -> None:
        # Called only while the address may still fail (authenticate checks
        # first), so these lines are bounded by the failure limit too.
        self.failures.take(address)
        log.warning("authentication failed on %s from %s: %s", route, address, reason)
        if self.failures.would_wait(address):
            log.warning(
                "%s failed authentication %d times: its tokens are refused for a while",
                address,
                FAILURE_BURST,
            )

    async def note_use(self, info: TokenInfo) -> None:
        now = self.clock()
        if now - self._touched.get(info.name, -TOUCH_INTERVAL) < TOUCH_INTERVAL:
            return
        self._touched[info.name] = now
        await self.touch(info.name)


def check_body_size(request: HTTPConnection, max_body: int) -> None:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise Denied(400, f"Content-Length is not a number: {length[:40]!r}")
        if int(length) > max_body:
            raise Denied(413, _too_large(max_body))
    elif max_body == 0 and "chunked" in request.headers.get("transfer-encoding", "").lower():
        raise Denied(413, _too_large(max_body))


def _too_large(max_body: int) -> str:
    if max_body == 0:
        return "this route takes no request body"
    return f"body is larger than {max_body} bytes"


def denied(request: Request, exc: Exception) -> Response:
    """The app's handler for Denied."""
    assert isinstance(exc, Denied)
    return JSONResponse({"message": exc.message}, status_code=exc.status, headers=exc.headers)
