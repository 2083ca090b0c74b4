"""The Go client's WebSocket on `/`: one JSON event a message, a count after each burst.

The connection's messages are pulled by one task into an inbox of at most
MAX_BURST messages or MAX_BURST_BYTES; the handler takes what the inbox
holds as one burst (what came while the last was committed),
stores its events, and answers the cumulative count (`burst.py` says what
counts). The empty binary message ends the stream: the count is sent, then
a normal close. A message that is not JSON: the events before it are
stored, the count sent, and the connection closed with 1007. No message
(nor ping) for `idle_timeout` seconds closes it with 1001: a message begun
and never finished cannot hold a connection. Access is that of any ingest
route (telemd.collector.access.guard), checked before the handshake by
its GuardedWebSocketRoute.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

from telemd.collector.access.tokens import TOKEN_PATTERN
from telemd.collector.events.model import stored_headers
from telemd.collector.jsonstream.burst import read_burst
from telemd.collector.jsonstream.commit import MAX_WAITING_BYTES, MAX_WAITING_EVENTS
from telemd.collector.jsonstream.sink import StreamSink
from telemd.collector.store.base import StorageError

if TYPE_CHECKING:
    from telemd.collector.server.app import Collector

log = logging.getLogger("telemd.collector")
PROTOCOL = "telemetry-websocket"
# A burst is what came while the last was stored, bounded as a stream's
# waiting events are (commit.py): the more a burst holds, the fewer commits.
MAX_BURST = MAX_WAITING_EVENTS
MAX_BURST_BYTES = MAX_WAITING_BYTES


class TokenConvertor(Convertor[str]):
    """A path segment shaped like a token: `/TOKEN` is ingest, any other path a 404."""

    regex = TOKEN_PATTERN.pattern

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("token", TokenConvertor())
# `/` with the token as its one segment, for clients given a URL but no header.
TOKEN_PATH = "/{token:token}"


class Inbox:
    """The connection's messages, pulled as they come, at most `limit` or `max_bytes` waiting."""

    def __init__(
        self, receive: Receive, limit: int = MAX_BURST, max_bytes: int = MAX_BURST_BYTES
    ) -> None:
        self._receive = receive
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: list[Message] = []
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task = asyncio.ensure_future(self._pull())

    async def _pull(self) -> None:
        while True:
            await self._room.wait()
            message = await self._receive()
            self._items.append(message)
            self._bytes += len(message.get("bytes") or message.get("text") or "")
            self._ready.set()
            if len(self._items) >= self._limit or self._bytes >= self._max_bytes:
                self._room.clear()
            if message["type"] == "websocket.disconnect":
                return

    async def take(self) -> list[Message]:
        """Every message waiting, once there is at least one."""
        await self._ready.wait()
        items, self._items = self._items, []
        self._bytes = 0
        self._ready.clear()
        self._room.set()
        return items

    def close(self) -> None:
        self._task.cancel()


class WebSocketIngest:
    """The ASGI app of the WebSocket routes, behind their access rule (GuardedWebSocketRoute)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        connection = HTTPConnection(scope, receive)
        collector: Collector = scope["app"].state.collector
        remote = connection.client.host if connection.client else "unknown"
        headers = stored_headers(
            connection.headers,
            connection.url.path,
            connection.url.query,
            connection.path_params.get("token"),
        )
        await send({"type": "websocket.accept"})
        sink = StreamSink(collector, PROTOCOL, remote, headers)
        inbox = Inbox(receive)
        try:
            await self._serve(collector, inbox, sink, send, remote)
        finally:
            inbox.close()
            await sink.close()

    async def _serve(
        self, collector: Collector, inbox: Inbox, sink: StreamSink, send: Send, remote: str
    ) -> None:
        count = 0
        idle = collector.config.body_timeout
        while True:
            try:
                messages = await asyncio.wait_for(inbox.take(), idle)
            except asyncio.TimeoutError:
                await _close(send, 1001, f"no message for {idle:g} s")
                return
            burst = read_burst(messages, sink.taken)
            before = sink.taken
            try:
                unstorable = await sink.add(burst.values) if burst.values else None
                await sink.flush()
            except StorageError as exc:
                collector.metrics.count_storage_error()
                log.warning("WebSocket stream from %s: storage failed: %s", remote, exc.message)
                await _close(send, 1011, "storage unavailable")
                return
            if unstorable is None:
                count += burst.handled
                error = burst.error
            else:  # the events after the one that cannot be stored are not counted
                count += sink.taken - before
                error = unstorable
            if burst.closed:
                return
            if burst.handled or error:
                await send({"type": "websocket.send", "text": str(count)})
            if error is not None:
                log.warning(
                    "WebSocket stream from %s refused after %d events: %s",
                    remote,
                    sink.stored,
                    error,
                )
                await _close(send, 1007, error)
                return
            if burst.ends:
                await _close(send, 1000, "")
                return


async def _close(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": code, "reason": reason[:120]})
