"""The Go client of the "telemetry" project, as bytes: its slog lines, its chunked
POST head, and a reader of the events a collector stored."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time
import zlib
from typing import Any

from collector_proc import CollectorProcess

from telemd.collector import json_codec
from telemd.collector.store.base import Store, open_engine


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


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


def events_once_stored(server: CollectorProcess, count: int) -> list[dict[str, Any]]:
    """The stored events once there are `count` (a bounded wait: nothing signals it)."""
    deadline = time.monotonic() + 10
    while len(events := stored_events(server)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return events


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


TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
# What coder/websocket's Go client offers (the server may take it or not).
DEFLATE_OFFER = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"


def frame(opcode: int, payload: bytes, deflate: bool = False) -> bytes:
    """One masked client frame; with `deflate`, compressed as RFC 7692 says."""
    if not deflate:
        return _frame(0x80 | opcode, payload)
    compressor = zlib.compressobj(wbits=-15)
    payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return frame_of_compressed(opcode, payload[:-4])  # the 00 00 ff ff of the flush


def frame_of_compressed(opcode: int, deflated: bytes) -> bytes:
    """A masked client frame of a payload already deflated (RSV1 set)."""
    return _frame(0x80 | 0x40 | opcode, deflated)


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes([first, 0x80 | size])
    elif size < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", size)
    mask = os.urandom(4)
    # XOR by whole words: the mask repeated, as one big integer.
    padded = payload + b"\0" * (-len(payload) % 4)
    key = int.from_bytes(mask * (len(padded) // 4), "big") if padded else 0
    masked = (int.from_bytes(padded, "big") ^ key).to_bytes(len(padded), "big")[: len(payload)]
    return head + mask + masked


class RawWebSocket:
    """A WebSocket client on a bare socket: the test decides what each write holds."""

    def __init__(
        self,
        port: int,
        path: str = "/",
        headers: str = "",
        deflate: bool = True,
        tls: ssl.SSLContext | None = None,
    ):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        if tls is not None:  # wss://, as the Go client dials an https server
            self.sock = tls.wrap_socket(self.sock, server_hostname="127.0.0.1")
        key = base64.b64encode(os.urandom(16)).decode()
        offer = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else ""
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "User-Agent: Go-http-client/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{offer}{headers}"
                "Accept-Encoding: gzip\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        self.status = int(head.split()[1])
        self.head = head
        self.deflated = "permessage-deflate" in head.lower()
        self.inflater = zlib.decompressobj(wbits=-15)
        if self.status == 101:
            expected = base64.b64encode(
                hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
            ).decode()
            assert expected in head, head

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError(f"closed: {self.buffer!r}")
            self.buffer += more
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            more = self.sock.recv(65536)
            if not more:
                raise ConnectionError("closed in a frame")
            self.buffer += more
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def rest(self) -> bytes:
        """Everything the server sends until it closes (the body of a refusal)."""
        while more := self.sock.recv(65536):
            self.buffer += more
        return self.buffer

    def send(self, *frames: bytes) -> None:
        """All `frames` in one write: one burst for the server."""
        self.sock.sendall(b"".join(frames))

    def receive(self) -> tuple[int, bytes]:
        """The next message the server sends: (opcode, payload), inflated."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        payload = self._read(size)
        if first & 0x40:
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        return first & 0x0F, payload

    def close(self) -> None:
        self.sock.close()
