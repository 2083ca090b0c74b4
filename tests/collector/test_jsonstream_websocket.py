"""The Go client's WebSocket on `/`, on SQLite and PostgreSQL: one event a message,
the cumulative count after each burst, the empty binary message that ends it."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from access_tokens import make_token
from collector_proc import CollectorProcess
from gostream import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    events_once_stored,
    frame,
    frame_of_compressed,
    memory_kib,
    slog_line,
    stored_events,
)

from telemd.collector.cli import main as collector_main
from telemd.collector.jsonstream.websocket import Inbox

websockets_sync = pytest.importorskip("websockets.sync.client", reason="needs websockets >= 11")
from websockets.exceptions import ConnectionClosedOK  # noqa: E402 (after the skip)


def test_two_events_and_the_terminator_in_one_burst_answer_3(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    ws = RawWebSocket(server.port)
    assert ws.status == 101 and ws.deflated
    ws.send(
        frame(TEXT, slog_line(1), deflate=True),
        frame(BINARY, slog_line(2), deflate=True),
        frame(BINARY, b""),
    )
    assert ws.receive() == (TEXT, b"3")
    opcode, payload = ws.receive()
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1000
    ws.close()
    events = stored_events(server)
    assert [e["payload"]["n"] for e in events] == [1, 2]
    assert events[0]["protocol"] == "telemetry-websocket"
    assert events[0]["headers"]["upgrade"] == "websocket"
    assert "sec-websocket-key" in events[0]["headers"]


def test_counts_are_cumulative_over_bursts_and_include_pings(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    ws = RawWebSocket(server.port, deflate=False)
    ws.send(frame(TEXT, slog_line(1)), frame(PING, b"p"), frame(TEXT, slog_line(2)))
    assert ws.receive() == (PONG, b"p")
    assert ws.receive() == (TEXT, b"3")
    ws.send(frame(TEXT, slog_line(3)))
    assert ws.receive() == (TEXT, b"4")
    ws.send(frame(BINARY, b""))
    assert ws.receive() == (TEXT, b"5")
    ws.close()
    assert [e["seq"] for e in stored_events(server)] == [0, 1, 2]


def test_invalid_json_keeps_the_events_before_and_closes_with_1007(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    ws = RawWebSocket(server.port)
    ws.send(frame(TEXT, slog_line(1)), frame(TEXT, b"not json\n"), frame(TEXT, slog_line(3)))
    assert ws.receive() == (TEXT, b"1")
    opcode, payload = ws.receive()
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1007
    assert payload[2:].startswith(b"message 2 is not valid JSON")
    ws.close()
    assert [e["payload"]["n"] for e in stored_events(server)] == [1]
    assert "refused after 1 events" in server.log()


def test_a_close_frame_keeps_the_events_of_its_burst(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    ws = RawWebSocket(server.port)
    ws.send(frame(TEXT, slog_line(1)), frame(CLOSE, struct.pack("!H", 1000)))
    opcode, _ = ws.receive()
    assert opcode == CLOSE
    ws.close()
    # uvicorn answers the close itself, before the handler has stored the burst.
    assert [e["payload"]["n"] for e in events_once_stored(server, 1)] == [1]


def test_a_connection_reset_midway_keeps_every_event_counted_before(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    ws = RawWebSocket(server.port, deflate=False)
    ws.send(frame(TEXT, slog_line(1)), frame(TEXT, slog_line(2)))
    assert ws.receive() == (TEXT, b"2")
    ws.send(*[frame(TEXT, slog_line(n)) for n in range(3, 3000)])
    # A reset, no close frame: the events on their way may be lost, not those counted.
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.sock.close()
    events = events_once_stored(server, 2)
    assert [e["payload"]["n"] for e in events] == list(range(1, len(events) + 1))
    ws = RawWebSocket(server.port, deflate=False)  # and the collector takes the next stream
    ws.send(frame(TEXT, slog_line(1)), frame(BINARY, b""))
    assert ws.receive() == (TEXT, b"2")
    ws.close()


def test_a_silent_connection_is_closed_after_the_body_timeout(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector(args=["--body-timeout", "1"])
    ws = RawWebSocket(server.port)
    ws.send(frame(TEXT, slog_line(1))[:5])  # a frame begun, never finished
    opcode, payload = ws.receive()
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1001
    ws.close()


def test_a_message_over_1_mib_closes_with_1009(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    ws = RawWebSocket(server.port)
    ws.send(frame(TEXT, slog_line(1)))
    assert ws.receive() == (TEXT, b"1")
    ws.send(frame(TEXT, b'"' + b"x" * (1024 * 1024) + b'"'))
    opcode, payload = ws.receive()
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1009
    ws.close()
    assert len(stored_events(server)) == 1


def library_counts(url: str, numbers: range, **options: Any) -> list[int]:
    """Send slog lines and the terminator with the websockets library; the counts heard."""
    counts = []
    with websockets_sync.connect(url, **options) as ws:
        for n in numbers:
            ws.send(slog_line(n).decode())
        ws.send(b"")
        try:
            while True:
                counts.append(int(ws.recv(timeout=10)))
        except ConnectionClosedOK:
            pass
    return counts


def test_the_websockets_library_as_a_client(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector()
    counts = library_counts(f"ws://127.0.0.1:{server.port}/", range(5))
    assert counts == sorted(counts) and counts[-1] == 6
    assert len(stored_events(server)) == 5


def test_the_stream_over_tls_through_the_handshake_guard(
    start_collector: Callable[..., CollectorProcess], tls_files: tuple[str, str, str]
) -> None:
    """wss://: the upgrade and the counts on a connection whose TLS handshake the
    collector ran itself (server/handshake.py), raw and through the websockets library."""
    server = start_collector(tls=tls_files)
    context = ssl.create_default_context(cafile=tls_files[2])
    ws = RawWebSocket(server.port, tls=context)
    assert ws.status == 101 and ws.deflated
    ws.send(
        frame(TEXT, slog_line(1), deflate=True),
        frame(BINARY, slog_line(2), deflate=True),
        frame(BINARY, b""),
    )
    replies = []
    while (reply := ws.receive())[0] != CLOSE:
        replies.append(reply)
    assert replies[-1] == (TEXT, b"3") and all(opcode == TEXT for opcode, _ in replies)
    ws.close()
    counts = library_counts(f"wss://127.0.0.1:{server.port}/", range(3, 6), ssl=context)
    assert counts[-1] == 4
    assert [e["payload"]["n"] for e in stored_events(server)] == [1, 2, 3, 4, 5]


def test_ingest_auth_token_is_asked_before_the_handshake(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector(args=["--ingest-auth", "token"])
    refused = RawWebSocket(server.port)
    assert refused.status == 401
    refused.close()
    for ws in (
        RawWebSocket(server.port, headers=f"Authorization: Bearer {server.token}\r\n"),
        RawWebSocket(server.port, path=f"/{server.token}"),
    ):
        assert ws.status == 101
        ws.send(frame(TEXT, slog_line(1)), frame(BINARY, b""))
        assert ws.receive() == (TEXT, b"2")
        ws.close()
    events = stored_events(server)
    assert len(events) == 1  # the same line twice is one event
    assert server.token not in str(events[0]["headers"])


def test_a_revoked_or_read_only_token_is_refused_before_the_handshake(
    start_collector: Callable[..., CollectorProcess],
) -> None:
    server = start_collector(args=["--ingest-auth", "token"])
    reader = make_token(server.db_url, "reader-only", ["read"])
    ws = RawWebSocket(server.port, headers=f"Authorization: Bearer {reader}\r\n")
    assert ws.status == 403 and b"lacks the ingest scope" in ws.rest()
    ws.close()
    revoked = make_token(server.db_url, "gone", ["ingest"])
    assert collector_main(["token", "revoke", "gone", "--db", server.db_url]) == 0
    ws = RawWebSocket(server.port, path=f"/{revoked}")
    assert ws.status == 401
    ws.close()
    assert stored_events(server) == []


def test_a_deflate_bomb_is_closed_with_1009_without_inflating_it_whole(
    engine: str, start_collector: Callable[..., CollectorProcess]
) -> None:
    if engine != "sqlite":
        pytest.skip("the bound is the WebSocket protocol's, alike on both engines: run once")
    server = start_collector()
    before = memory_kib(server.proc.pid, "VmRSS")
    compressor = zlib.compressobj(wbits=-15)
    zeros = b"0" * (1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(1024))  # 1 GiB inflated
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)
    ws = RawWebSocket(server.port)
    assert ws.deflated
    ws.send(frame_of_compressed(TEXT, bomb[:-4]))
    opcode, payload = ws.receive()
    assert opcode == CLOSE and struct.unpack("!H", payload[:2])[0] == 1009
    ws.close()
    peak = memory_kib(server.proc.pid, "VmHWM")
    # A read of up to 256 KiB inflated at once would be 256 MiB.
    assert peak - before < 64 * 1024, f"RSS from {before} KiB to a peak of {peak} KiB"
    assert RawWebSocket(server.port).status == 101  # and the collector serves on


def test_the_inbox_stops_pulling_at_its_bound_in_messages_or_bytes() -> None:
    async def scenario(size: int) -> list[int]:
        waiting = [{"type": "websocket.receive", "text": "x" * size} for _ in range(50)]

        async def receive() -> dict[str, object]:  # a client faster than the handler
            return waiting.pop()

        inbox = Inbox(receive, limit=20, max_bytes=100_000)  # type: ignore[arg-type]
        bursts = [len(await inbox.take()) for _ in range(2)]
        inbox.close()
        return bursts

    assert asyncio.run(scenario(10)) == [20, 20]  # small messages: the count bounds a burst
    assert asyncio.run(scenario(40_000)) == [3, 3]  # large: the bytes (3 x 40,000 >= 100,000)
