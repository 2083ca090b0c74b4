"""Slow clients for the slowloris test and bench/slowloris.py: connections that
trickle a request, and the wait for the server to close them."""

from __future__ import annotations

import http.client
import selectors
import socket
import ssl
import threading
import time
import urllib.parse

HEAD_START = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def open_slow(port: int, count: int, first: bytes) -> dict[socket.socket, float]:
    """`count` connections that sent `first`; when each was opened."""
    opened = {}
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first:
            sock.sendall(first)
        sock.setblocking(False)
        opened[sock] = time.monotonic()
    return opened


class Trickle(threading.Thread):
    """One byte to each socket every `every` seconds, until stopped."""

    def __init__(self, sockets: list[socket.socket], every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.sockets = sockets
        self.every = every
        self.halt = threading.Event()

    def run(self) -> None:
        live = list(self.sockets)
        while live and not self.halt.wait(self.every):  # the attack's own pace
            for sock in list(live):
                try:
                    sock.send(b"X")
                except OSError:  # closed by the collector
                    live.remove(sock)


class Closings(threading.Thread):
    """Watch sockets until the server closes each (or a deadline): when, and what it sent.

    Runs beside whatever the caller does meanwhile, so that a closing is seen
    when it happens. `held[sock]` is how long the socket stayed open.
    """

    def __init__(self, opened: dict[socket.socket, float], timeout: float) -> None:
        super().__init__(daemon=True)
        self.opened = opened
        self.deadline = time.monotonic() + timeout
        self.received: dict[socket.socket, bytes] = {sock: b"" for sock in opened}
        self.held: dict[socket.socket, float] = {}

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for sock in self.opened:
                selector.register(sock, selectors.EVENT_READ)
            while len(self.held) < len(self.opened) and time.monotonic() < self.deadline:
                for key, _ in selector.select(timeout=max(0.0, self.deadline - time.monotonic())):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        self.received[sock] += data
                        continue
                    selector.unregister(sock)
                    self.held[sock] = time.monotonic() - self.opened[sock]

    def wait(self) -> dict[socket.socket, float]:
        """Once every socket is closed or the deadline passed: how long each closed one was held."""
        self.join(max(0.0, self.deadline - time.monotonic()) + 5)
        return self.held


def healthz_latencies(
    base_url: str, probes: int, context: ssl.SSLContext | None = None
) -> list[float]:
    """Seconds each GET /healthz took on a new connection, connecting (and with
    `context`, the TLS handshake) included."""
    url = urllib.parse.urlsplit(base_url)
    host = url.hostname or "127.0.0.1"
    latencies = []
    for _ in range(probes):
        started = time.monotonic()
        conn = (
            http.client.HTTPSConnection(host, url.port, timeout=10, context=context)
            if context
            else http.client.HTTPConnection(host, url.port, timeout=10)
        )
        try:
            conn.request("GET", "/healthz")
            answer = conn.getresponse()
            assert answer.status == 200, answer.read()
            answer.read()
        finally:
            conn.close()
        latencies.append(time.monotonic() - started)
    return latencies
