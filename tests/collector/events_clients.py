"""The app telemetry clients' requests, byte for byte, and a raw HTTPS sender.

The bytes follow what each client's code sends (SEEDS.md): shuttle's Go
uploader (http.Post with a JSON array, no custom headers), Vrooli's upload
(the wrapper with its query, or JSONL runtime lines).
"""

from __future__ import annotations

import json
import socket
import ssl
import uuid
from typing import Any

from collector_proc import CollectorProcess


def go_request(
    method: str, target: str, host: str, body: bytes = b"", content_type: str | None = None
) -> bytes:
    """An HTTP/1.1 request as Go's net/http client writes it."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "User-Agent: Go-http-client/1.1"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append("Accept-Encoding: gzip")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def send_raw(server: CollectorProcess, request: bytes) -> tuple[int, bytes]:
    """Write `request` as is on a new TLS connection; (status, body) of the answer."""
    assert server.tls is not None
    context = ssl.create_default_context(cafile=server.tls[2])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = tls.recv(65536)
            assert chunk, f"connection closed before the answer's head: {answer!r}"
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            chunk = tls.recv(65536)
            assert chunk, "connection closed before the answer's body"
            body += chunk
    return int(head.split(b" ", 2)[1]), body


def shuttle_file(context_id: str, run_id: str | None = None) -> bytes:
    """One shuttle spool file as the uploader posts it: a JSON array, Go's encoding."""
    run_id = run_id or str(uuid.uuid4())

    def event(stamp: str, phase: str, **extra: str) -> dict[str, Any]:
        properties = {
            "label": "run",
            "phase": phase,
            "shuttle.command": "run",
            "shuttle.contextID": context_id,
            "shuttle.runID": run_id,
            **extra,
        }
        # Go's encoding/json writes map keys sorted, without spaces.
        return {
            "app": "shuttle",
            "timestamp": stamp,
            "properties": dict(sorted(properties.items())),
        }

    events = [
        event("2026-12-07T10:00:00.123456789Z", "start"),
        event("2026-12-07T10:00:01.5+01:00", "end"),
    ]
    return json.dumps(events, separators=(",", ":")).encode()
