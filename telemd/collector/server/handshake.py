"""The collector's guard on TLS handshakes: bounded in time and counted against max_connections.

asyncio's TLS server (loop.create_server(ssl=...), the way uvicorn serves
HTTPS) calls a protocol's connection_made only once the handshake is done. A
client that connects and never sends its ClientHello, or sends half of one,
is invisible to the h11 guard (connections.py) and holds a descriptor for
asyncio's 60 s; a thousand of them use up the descriptor limit, and accept()
then fails for everyone. Here the server accepts plain TCP, and each
connection's handshake runs under `HandshakeGuard` (loop.start_tls):

- the handshake must be done within `header_timeout` seconds of the
  connection (its request head then has as long again); else it is closed;
- connections in their handshake count with the established ones against
  `max_connections`: beyond, the one that has been in its handshake longest
  is closed to make room, else the one that has waited longest for a request
  head (connections.py), else the newcomer goes on and the h11 guard answers
  it 503 once its handshake is done;
- once done, the connection is handed to the h11 protocol, as asyncio's TLS
  server would have.

Closings are logged with connections.py's: the first of a cause at once, then
a count per interval. A TLS collector runs on asyncio's own loop, which keeps
a pause asked for in connection_made (uvloop does not). This module never
reads what a client sends.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from typing import Any, ClassVar, cast

import uvicorn
from uvicorn.protocols.utils import get_remote_addr

from telemd.collector.server.connections import GuardedH11Protocol


class HandshakeGuard(asyncio.Protocol):
    """One accepted connection through its TLS handshake; then its h11 protocol's."""

    context: ClassVar[ssl.SSLContext]
    protocol_class: ClassVar[type[GuardedH11Protocol]]
    # Connections in their handshake, longest first.
    handshaking: ClassVar[OrderedDict[HandshakeGuard, None]]

    def __init__(self, **uvicorn_args: Any) -> None:
        """`uvicorn_args`: what uvicorn gives a protocol, kept for the h11 protocol."""
        self.uvicorn_args = uvicorn_args
        # uvicorn's connections, which the h11 guard counts: a handshake is
        # one of them, and uvicorn's shutdown calls shutdown() on each.
        self.connections: set[Any] = uvicorn_args["server_state"].connections
        self.raw: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.app: GuardedH11Protocol | None = None
        # Decrypted data that came with the handshake's last flight, before the handover.
        self.early: list[bytes] = []
        self.encrypted = False
        self.eof = False
        self.deadline: asyncio.TimerHandle | None = None
        self.handshake: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (asyncio's or uvloop's, which is no subclass of it).
        transport = cast(asyncio.Transport, transport)
        self.raw = transport
        self.client = get_remote_addr(transport)
        # start_tls pauses reading too, but only when its task runs: until
        # then no byte may reach this protocol in the clear.
        transport.pause_reading()
        self.handshaking[self] = None
        self.connections.add(self)
        limits = self.protocol_class.limits
        if len(self.connections) > limits.max_connections:
            self._make_room()
        loop = asyncio.get_running_loop()
        self.deadline = loop.call_later(limits.header_timeout, self._too_slow)
        self.handshake = loop.create_task(self._shake_hands(transport))

    async def _shake_hands(self, raw: asyncio.Transport) -> None:
        try:
            if raw.is_closing():  # shed before its turn came
                return
            starting = asyncio.get_running_loop().start_tls(
                raw, self, self.context, server_side=True
            )
            self.encrypted = True  # from here on the TLS layer reads `raw`
            tls = await starting
        except OSError:
            # Not TLS, a certificate refused, the peer gone: asyncio's TLS
            # layer has closed the connection and logged it at debug level,
            # as a create_server(ssl=...) server does.
            return
        finally:
            self._leave()
        if tls is None or tls.is_closing():  # closed by the guard during the handshake
            return
        self.app = self.protocol_class(**self.uvicorn_args)
        self.app.connection_made(tls)
        tls.set_protocol(self.app)
        if tls.is_closing():  # turned away by the h11 guard (503)
            return
        for data in self.early:
            self.app.data_received(data)
        self.early.clear()
        if self.eof:
            self.app.eof_received()

    def data_received(self, data: bytes) -> None:
        if self.app is not None:
            self.app.data_received(data)
        elif self.encrypted:
            self.early.append(data)
        else:  # a loop that ignored the pause: the bytes are the TLS layer's, and lost to it
            self._close("data read before its TLS handshake began")

    def eof_received(self) -> None:
        if self.app is not None:
            self.app.eof_received()
        else:
            self.eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()
        if self.app is not None:
            self.app.connection_lost(exc)

    def shutdown(self) -> None:
        """The collector stops: a handshake not done is not waited for."""
        self._leave()
        if self.raw is not None:
            self.raw.abort()

    def _leave(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.handshaking.pop(self, None)
        self.connections.discard(self)

    def _too_slow(self) -> None:
        self.deadline = None
        timeout = self.protocol_class.limits.header_timeout
        self._close(f"TLS handshake not complete within {timeout:g} s")

    def _make_room(self) -> None:
        """Close the connection longest in its handshake, else the longest waiting for a head."""
        for other in self.handshaking:
            if other is not self:
                limit = self.protocol_class.limits.max_connections
                other._close(f"in its TLS handshake, shed to stay within {limit} connections")
                return
        self.protocol_class.make_room(sparing=None)

    def _close(self, cause: str) -> None:
        self._leave()
        if self.raw is not None and not self.raw.is_closing():
            self.protocol_class.closing.closed(cause, self.client)
            self.raw.abort()  # nothing to say to it before TLS, and no waiting on it


def guarding_handshakes(
    protocol_class: type[GuardedH11Protocol], context: ssl.SSLContext
) -> type[HandshakeGuard]:
    """A protocol class for a plain server that runs TLS with `context` under the guard."""
    return type(
        "HandshakeGuard",
        (HandshakeGuard,),
        {"context": context, "protocol_class": protocol_class, "handshaking": OrderedDict()},
    )


class HandshakeGuardedConfig(uvicorn.Config):
    """uvicorn's Config, with TLS handshakes run by HandshakeGuard.

    uvicorn builds its SSLContext in load() and gives it to
    loop.create_server, which bounds neither the time of a handshake (60 s)
    nor the number of them. Here load() hands the context to the guard
    instead and leaves uvicorn a plain server whose protocol is the guard.
    `http` must be a protocol class from connections.guarded_protocol.
    """

    def __init__(self, app: Any, **kwargs: Any) -> None:
        if kwargs.get("ssl_certfile"):
            # The guard pauses reading in connection_made until start_tls
            # takes the connection over; uvloop starts reading once
            # connection_made returns, pause or not, and a ClientHello would
            # reach the guard in the clear. asyncio's loop keeps the pause.
            kwargs["loop"] = "asyncio"
        super().__init__(app, **kwargs)

    def load(self) -> None:
        super().load()
        if self.ssl is not None:
            guarded = self.http_protocol_class
            assert issubclass(guarded, GuardedH11Protocol), "http= takes guarded_protocol(...)"
            self.http_protocol_class = guarding_handshakes(guarded, self.ssl)
            self.ssl = None
