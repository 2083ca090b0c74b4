"""The first flight a real TLS client sends, for tests and benches that stall a handshake."""

from __future__ import annotations

import ssl


def client_hello() -> bytes:
    """One ClientHello record, as Python's TLS client writes it to 127.0.0.1."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="127.0.0.1")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:  # it waits for the server's answer
        return outgoing.read()
    raise AssertionError("a TLS handshake went on without a server")
