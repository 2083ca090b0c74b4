"""The collector's guard against slow and surplus connections (uvicorn's h11 protocol).

uvicorn times out only an idle keep-alive connection: a client that opens a
connection and trickles its request head one byte at a time, or its body,
holds a descriptor for ever, and uvicorn's `limit_concurrency` counts those
connections too, so enough of them turn every request, /healthz included,
into a 503. This protocol adds what uvicorn lacks:

- a request head must arrive whole within `header_timeout` seconds of its
  first byte (or of the connection); else 408 and the connection is closed;
- a request body must arrive whole within `body_timeout` seconds of its head;
  else the connection is closed and the route sees the client gone; a route
  that reads its body as a stream (telemd.collector.jsonstream.post) calls
  the `telemd.stream_body` extension of its scope, and then the body may
  take as long as it likes but no pause between chunks may last
  `body_timeout`;
- a client that stops reading its answer (the write buffer stays full for
  `body_timeout` seconds) is cut off, so that it cannot hold a route and
  the answer's memory;
- at most `max_connections` at once: beyond, the connection that has waited
  longest for a request head (slow or idle) is closed to make room, and when
  every connection is busy with a request the new one gets 503.

Each closing is logged: the first of its cause at once, then one line per
`LOG_INTERVAL` with the count. This module never reads a request's content.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("telemd.collector")
LOG_INTERVAL = 60.0
# The listen backlog, and so how many connections asyncio accepts in one
# turn of the loop, before the guard can shed any for them.
LISTEN_BACKLOG = 128
# Descriptors kept beside counted connections: database, log, TLS files,
# worker threads, the connections accepted in one turn that wait for room,
# and those shed for them, whose descriptors close a turn later. Without
# them a burst meets EMFILE, and asyncio then logs each failed accept of the
# turn and stops accepting for a second.
DESCRIPTOR_RESERVE = 2 * LISTEN_BACKLOG + 64


def _answer(status: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, written past h11."""
    body = b'{"message": "' + message.encode() + b'"}'
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head.encode() + b"content-length: %d\r\n\r\n" % len(body) + body


STREAM_BODY = "telemd.stream_body"


def _offering_stream_body(app: ASGIApp, stream_body: Callable[[], None]) -> ASGIApp:
    async def app_with_extension(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("extensions", {})[STREAM_BODY] = stream_body
        await app(scope, receive, send)

    return app_with_extension


HEAD_TIMEOUT_ANSWER = _answer("408 Request Timeout", "the request head did not arrive in time")
FULL_ANSWER = _answer("503 Service Unavailable", "too many connections; try again later")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 4096


class ClosingLog:
    """Closings per cause: the first logged at once, then a count per interval."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self.pending: dict[str, int] = {}

    def closed(self, cause: str, peer: object) -> None:
        if cause in self.pending:
            self.pending[cause] += 1
            return
        log.warning("closed a connection from %s: %s", peer, cause)
        self.pending[cause] = 0
        asyncio.get_running_loop().call_later(self.interval, self._summarize, cause)

    def _summarize(self, cause: str) -> None:
        count = self.pending.pop(cause)
        if count:
            log.warning("closed %d more connections in %g s: %s", count, self.interval, cause)
            self.pending[cause] = 0
            asyncio.get_running_loop().call_later(self.interval, self._summarize, cause)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with head and body deadlines and a connection cap.

    A connection is in one phase at a time: "idle" (keep-alive, between
    requests: uvicorn's own timer), "head" (reading a request head), "body"
    (reading its body), "app" (the route runs; no deadline here) or
    "upgraded" (handed to the WebSocket protocol).
    """

    limits: ClassVar[ConnectionLimits]
    closing: ClassVar[ClosingLog]
    # Connections waiting for a request head (idle or head), longest first.
    waiting: ClassVar[OrderedDict[GuardedH11Protocol, None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = "head"
        self.streaming = False  # the body deadline is one per chunk
        self.deadline: asyncio.TimerHandle | None = None
        self.unread: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _offering_stream_body(self.app, self.stream_body)
        if len(self.connections) > self.limits.max_connections and not self.make_room(self):
            self.closing.closed(f"more than {self.limits.max_connections} connections", self.client)
            transport.write(FULL_ANSWER)
            transport.close()
            return
        self._enter("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        self._reading_again()
        super().connection_lost(exc)

    def stream_body(self) -> None:
        """The route reads this request's body as a stream: a deadline per chunk."""
        self.streaming = True
        if self.phase == "body":
            self._enter("body")

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.unread is None:
            self.unread = asyncio.get_running_loop().call_later(
                self.limits.body_timeout, self._not_reading
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self._reading_again()

    def _reading_again(self) -> None:
        if self.unread is not None:
            self.unread.cancel()
            self.unread = None

    def _not_reading(self) -> None:
        self.unread = None
        self.closing.closed(f"answer not read for {self.limits.body_timeout:g} s", self.client)
        self.transport.abort()  # close() would wait for the buffer to drain

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow(data_arrived=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow(data_arrived=False)

    def _follow(self, data_arrived: bool) -> None:
        """Move to the phase h11's state says the request is in."""
        if self.transport.is_closing() or self.phase == "upgraded":
            return
        if self.transport.get_protocol() is not self:
            # Upgraded: the connection is the WebSocket protocol's from now
            # on (telemd.collector.jsonstream.websocket bounds its silences).
            self._leave()
            self.phase = "upgraded"
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self.phase in ("idle", "head") and not data_arrived:
                return
            phase = "head" if self.phase in ("idle", "head") else "idle"
        elif state is h11.SEND_BODY:
            phase = "body"
        else:
            phase = "app"
        if phase != self.phase or (phase == "body" and self.streaming and data_arrived):
            self._enter(phase)

    def _enter(self, phase: str) -> None:
        self._leave()
        self.phase = phase
        loop = asyncio.get_running_loop()
        if phase in ("idle", "head"):
            self.streaming = False
            self.waiting[self] = None
        if phase == "head":
            self.deadline = loop.call_later(self.limits.header_timeout, self._too_slow, phase)
        elif phase == "body":
            self.deadline = loop.call_later(self.limits.body_timeout, self._too_slow, phase)

    def _leave(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.waiting.pop(self, None)

    def _too_slow(self, phase: str) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if phase == "head":
            self.closing.closed(
                f"request head not complete within {self.limits.header_timeout:g} s", self.client
            )
            self.transport.write(HEAD_TIMEOUT_ANSWER)
        else:
            self.closing.closed(
                f"request body not complete within {self.limits.body_timeout:g} s", self.client
            )
        self.transport.close()

    @classmethod
    def make_room(cls, sparing: object) -> bool:
        """Close the connection that has waited longest for a request head, but not `sparing`."""
        for other in cls.waiting:
            if other is not sparing:
                cls.waiting.pop(other)
                cls.closing.closed(
                    f"shed to stay within {cls.limits.max_connections} connections", other.client
                )
                other.transport.abort()  # nothing to say to it, and no waiting on it
                return True
        return False


def guarded_protocol(
    limits: ConnectionLimits, with_client_cert: bool = False
) -> type[GuardedH11Protocol]:
    """A protocol class for uvicorn.Config(http=...) bound to `limits`.

    With `with_client_cert`, requests also carry the verified client
    certificate's subject (telemd.collector.access.mtls).
    """
    bases: tuple[type, ...] = (GuardedH11Protocol,)
    if with_client_cert:
        from telemd.collector.access.mtls import ClientCertH11Protocol

        bases = (GuardedH11Protocol, ClientCertH11Protocol)
    return type(
        "GuardedH11Protocol",
        bases,
        {"limits": limits, "closing": ClosingLog(), "waiting": OrderedDict()},
    )


def fit_descriptor_limit(max_connections: int) -> int:
    """Raise the soft descriptor limit to what max_connections needs; the cap that fits.

    Each connection is a descriptor, and the store, logs, TLS files and a
    turn's accepted connections need some beside (DESCRIPTOR_RESERVE). If
    the hard limit is too low, the cap
    is lowered to fit and a warning says so.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + DESCRIPTOR_RESERVE
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    if soft == resource.RLIM_INFINITY or soft >= max_connections + DESCRIPTOR_RESERVE:
        return max_connections
    fitted = max(1, soft - DESCRIPTOR_RESERVE)
    log.warning(
        "max_connections %d does not fit the descriptor limit %d (LimitNOFILE=); serving %d",
        max_connections,
        hard,
        fitted,
    )
    return fitted
