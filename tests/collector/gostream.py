"""The Go client of the "telemetry" project, as bytes: its slog lines, its chunked
POST head, and a reader of the events a collector stored."""

from __future__ import annotations

import socket
from typing import Any

from collector_proc import CollectorProcess

from telemd.collector import json_codec
from telemd.collector.store.base import Store, open_engine


def slog_line(n: int, level: str = "INFO") -> bytes:
    """One line of Go's slog JSON handler, trailing newline included."""
    return b'{"time":"2024-07-03T15:16:55.%06d+10:00","level":"%s","msg":"hi mom","n":%d}\n' % (
        n,
        level.encode(),
        n,
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def post_head(port: int, path: str = "/", extra: str = "") -> bytes:
    """What Go's net/http sends for a POST whose body is a pipe: chunked, no length."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: Go-http-client/1.1\r\n"
        f"Transfer-Encoding: chunked\r\nContent-Type: application/jsonl\r\n{extra}"
        "Accept-Encoding: gzip\r\n\r\n"
    ).encode()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one HTTP/1.1 answer with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError(f"closed before the answer ended: {data!r}")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        more = sock.recv(65536)
        if not more:
            break
        body += more
    return int(lines[0].split()[1]), headers, body[:length]


def stored_events(server: CollectorProcess, source: str = "telemetry") -> list[dict[str, Any]]:
    """The events the collector stored from `source`, oldest first, with their stream."""
    store = Store(open_engine(server.db_url))
    try:
        with store.reading() as session:
            rows = session.fetch(
                "SELECT e.seq, CAST(e.payload AS TEXT), e.level, e.event, e.event_time, "
                "s.protocol, CAST(s.headers AS TEXT), e.stream_id FROM events e "
                "JOIN streams s ON s.id = e.stream_id WHERE e.source = ? ORDER BY e.id",
                (source,),
            )
    finally:
        store.close()
    return [
        {
            "seq": seq,
            "payload": json_codec.loads(payload),
            "level": level,
            "event": name,
            "time": time,
            "protocol": protocol,
            "headers": json_codec.loads(headers),
            "stream": stream,
        }
        for seq, payload, level, name, time, protocol, headers, stream in rows
    ]
