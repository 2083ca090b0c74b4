"""Slow and surplus connections against a real collector: slowloris.

A thousand connections trickle a request head one byte at a time (some send
nothing at all) while /healthz must keep answering; each is closed, with a
408, once the head deadline passes. A slow body is closed at its deadline,
and past max_connections the connection that has waited longest for a head
is shed to make room for the new one.
"""

from __future__ import annotations

import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from processes import Collector, report
from slow_clients import HEAD_START, Closings, Trickle, healthz_latencies, open_slow

SLOW_CONNECTIONS = 1000
HEADER_TIMEOUT = 5.0
# Generous for a shared 2-core machine; bench/slowloris.py measures the figure.
HEALTHZ_BOUND = 1.0


@pytest.fixture(autouse=True)
def enough_descriptors() -> Iterator[None]:
    """This process holds the slow sockets and the collector inherits the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * SLOW_CONNECTIONS + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_slowloris_connections_neither_block_healthz_nor_stay(tmp_path: Path) -> None:
    collector = Collector(tmp_path, args=["--header-timeout", str(HEADER_TIMEOUT)])
    collector.start()
    try:
        silent = open_slow(collector.port, SLOW_CONNECTIONS // 10, b"")
        trickling = open_slow(collector.port, SLOW_CONNECTIONS - len(silent), HEAD_START)
        closings = Closings({**silent, **trickling}, timeout=HEADER_TIMEOUT + 60)
        closings.start()
        trickle = Trickle(list(trickling))
        trickle.start()
        latencies = healthz_latencies(collector.base_url, 20)
        closed_while_probing = len(closings.held)
        held = closings.wait()
        trickle.halt.set()
        trickle.join(10)
        answers = {closings.received[sock].split(b"\r\n", 1)[0] for sock in held}
        for sock in closings.opened:
            sock.close()
        assert collector.proc is not None and collector.proc.poll() is None
        log = collector.log_path.read_text()
    finally:
        collector.stop()
    times = sorted(held.values())
    report(
        "slowloris/1000-trickling",
        slow_connections=SLOW_CONNECTIONS,
        healthz_worst_s=round(max(latencies), 3),
        healthz_median_s=round(sorted(latencies)[len(latencies) // 2], 3),
        closed=len(held),
        held_min_s=round(times[0], 2) if times else None,
        held_max_s=round(times[-1], 2) if times else None,
    )
    # Every probe ran while all the slow connections were still open.
    assert closed_while_probing == 0
    assert max(latencies) < HEALTHZ_BOUND
    assert len(held) == SLOW_CONNECTIONS, "some slow connections were held past the deadline"
    assert times[0] >= HEADER_TIMEOUT - 0.1
    assert answers == {b"HTTP/1.1 408 Request Timeout"}
    assert f"request head not complete within {HEADER_TIMEOUT:g} s" in log
    assert "Traceback" not in log


def test_a_slow_body_is_closed_at_its_deadline_without_a_traceback(tmp_path: Path) -> None:
    collector = Collector(tmp_path, args=["--body-timeout", "1"])
    collector.start()
    try:
        head = (
            b"POST /api/v1/records HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"X-Telemetry-TID: 6907c830-eed9-4ce9-81ae-76daf8d88f0f\r\n"
            b"Content-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n{"
        )
        opened = open_slow(collector.port, 20, head)
        closings = Closings(opened, timeout=30)
        closings.start()
        trickle = Trickle(list(opened), every=0.2)
        trickle.start()
        held = closings.wait()
        trickle.halt.set()
        trickle.join(10)
        for sock in opened:
            sock.close()
        healthz_latencies(collector.base_url, 1)
        log = collector.log_path.read_text()
    finally:
        collector.stop()
    assert len(held) == len(opened)
    assert min(held.values()) >= 1.0 - 0.1
    assert "request body not complete within 1 s" in log
    assert "Traceback" not in log


def test_past_max_connections_the_longest_waiting_is_shed(tmp_path: Path) -> None:
    cap = 50
    collector = Collector(tmp_path, args=["--max-connections", str(cap), "--header-timeout", "600"])
    collector.start()
    try:
        oldest = open_slow(collector.port, 1, HEAD_START)
        rest = open_slow(collector.port, cap - 1, HEAD_START)
        closings = Closings(oldest, timeout=30)
        closings.start()
        # The cap is full of slow heads; a new client still gets its answer.
        healthz_latencies(collector.base_url, 3)
        held = closings.wait()
        still_open = [sock for sock in rest if _is_open(sock)]
        for sock in [*oldest, *rest]:
            sock.close()
        log = collector.log_path.read_text()
    finally:
        collector.stop()
    assert len(held) == 1
    assert len(still_open) >= cap - 1 - 3  # one shed per probe at most
    assert f"shed to stay within {cap} connections" in log


def _is_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_a_client_that_stops_reading_its_answer_is_cut_off(tmp_path: Path) -> None:
    collector = Collector(tmp_path, args=["--body-timeout", "1"])
    collector.start()
    try:
        with httpx.Client(base_url=collector.base_url, timeout=30) as http:
            for batch in range(10):  # a batch body is at most 4 MiB
                body = b"".join(
                    json.dumps(
                        {**RECORD, "record_id": f"{batch:016x}{n:016x}", "payload": "x" * 30_000}
                    ).encode()
                    + b"\n"
                    for n in range(100)
                )
                stored = http.post("/api/v1/records", headers=BATCH_HEADERS, content=body)
                assert stored.json()["accepted"] == 100
        # 30 MB of answer, more than the kernel buffers (4 MiB at most), to a
        # client that reads none of it.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", collector.port))
        sock.sendall(
            b"GET /api/records?limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + collector.read_token.encode() + b"\r\n\r\n"
        )
        asked = time.monotonic()
        deadline = asked + 30
        while not holds(collector, sock) and time.monotonic() < deadline:
            time.sleep(0.05)  # until the collector has accepted it
        # The kernel may keep sending what it already holds after the
        # collector lets go: what counts is the collector's own socket.
        while holds(collector, sock) and time.monotonic() < deadline:
            time.sleep(0.05)  # bounded; nothing else signals a socket closed
        held = time.monotonic() - asked
        cut_off = not holds(collector, sock)
        sock.close()
        healthz_latencies(collector.base_url, 1)
        log = collector.log_path.read_text()
    finally:
        collector.stop()
    assert cut_off, "the collector kept writing to a client that does not read"
    assert 1.0 - 0.1 <= held < 30
    assert "answer not read for 1 s" in log
    assert "Traceback" not in log


RECORD = {
    "record_format_version": "4", "classification": "org.example/slow/reader", "severity": "1",
    "machine_id": "m" * 32, "creation_timestamp": "1700000000", "arch": "x86_64",
    "host_type": "blank|blank|blank", "build": "1", "kernel_version": "6.1.0",
    "payload_format_version": "1", "system_name": "debian", "board_name": "blank|blank",
    "cpu_model": "cpu", "bios_version": "1", "event_id": "0" * 32,
}  # fmt: skip
BATCH_HEADERS = {
    "X-Telemetry-TID": "6907c830-eed9-4ce9-81ae-76daf8d88f0f",
    "Content-Type": "application/x-ndjson",
}


def holds(collector: Collector, sock: socket.socket) -> bool:
    """Whether the collector process still has the other end of `sock` open."""
    assert collector.proc is not None
    client = sock.getsockname()
    return any(
        conn.raddr and tuple(conn.raddr) == client
        for conn in psutil.Process(collector.proc.pid).net_connections("tcp")
    )
