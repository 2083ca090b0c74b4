"""uvicorn's h11 protocol, telling the app which client certificate a connection showed.

uvicorn verifies a client certificate against `ssl_ca_certs` during the
handshake and refuses a connection whose certificate the CA did not sign;
with CERT_OPTIONAL it still accepts connections that show none. What it does
not do is tell the app which case it is: this protocol puts the verified
certificate's subject in the request scope, as the ASGI TLS extension's
`client_cert_name`, so that the guard can require one on ingest.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol


def subject_name(cert: dict[str, Any]) -> str:
    """`CN=host,O=org` from getpeercert()'s nested tuples."""
    parts = [f"{key}={value}" for rdn in cert.get("subject", ()) for key, value in rdn]
    return ",".join(parts) or "(no subject)"


def _with_client_cert(app: ASGIApp, name: str) -> ASGIApp:
    async def app_with_cert(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("extensions", {})["tls"] = {"client_cert_name": name}
        await app(scope, receive, send)

    return app_with_cert


class ClientCertH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # asyncio calls this once the handshake is done, so the peer is known.
        ssl_object = transport.get_extra_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        if cert:
            self.app = _with_client_cert(self.app, subject_name(cert))
