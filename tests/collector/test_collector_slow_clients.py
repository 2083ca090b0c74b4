"""Slow clients over HTTPS: the head deadline holds behind TLS too, and keep-alive ends.

The many-connection attacks are in tests/faults/test_slowloris.py (plain HTTP).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from collector_proc import CollectorProcess


def tls_connection(server: CollectorProcess) -> ssl.SSLSocket:
    assert server.tls is not None
    context = ssl.create_default_context(cafile=server.tls[2])
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return context.wrap_socket(sock, server_hostname="127.0.0.1")


def read_until_closed(tls: ssl.SSLSocket) -> bytes:
    data = b""
    try:
        while chunk := tls.recv(65536):
            data += chunk
    except (ssl.SSLError, ConnectionResetError):
        pass
    return data


def test_a_slow_head_over_tls_gets_408_at_the_deadline(
    start_collector: Callable[..., CollectorProcess], tls_files: tuple[str, str, str]
) -> None:
    server = start_collector(tls=tls_files, args=["--header-timeout", "1"])
    with tls_connection(server) as tls:
        started = time.monotonic()
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = read_until_closed(tls)
        held = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert 0.9 <= held < 10


def test_an_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(
    start_collector: Callable[..., CollectorProcess], tls_files: tuple[str, str, str]
) -> None:
    server = start_collector(
        tls=tls_files, args=["--keep-alive-timeout", "1", "--header-timeout", "60"]
    )
    with tls_connection(server) as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first: Any = tls.recv(65536)
        started = time.monotonic()
        rest = read_until_closed(tls)
        held = time.monotonic() - started
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest == b"" or rest.startswith(b"{")  # the body, if it came apart
    assert 0.9 <= held < 10
