"""A TLS handshake is no free slowloris: bounded in time by header_timeout, in number
by max_connections.

Real TCP connections to a real HTTPS collector that never finish their
handshake: silent ones, and ones that send part of a ClientHello. Each must be
closed about header_timeout after it connected, and more of them than the
collector may hold must not keep a real HTTPS client from /healthz.
"""

from __future__ import annotations

import json
import resource
import shutil
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from collector_proc import CollectorProcess
from tls_hello import client_hello

HEADER_TIMEOUT = 1.0
# Generous for a shared 2-core machine: without the bound, asyncio holds them 60 s.
CLOSED_BOUND = HEADER_TIMEOUT + 4.0
# The collector's descriptor limit in the crowd test (systemd's default soft
# limit), and connections beyond it.
COLLECTOR_NOFILE = 1024
SILENT_CROWD = 2 * COLLECTOR_NOFILE
HEALTHZ_PROBES = 20


@pytest.fixture(scope="module")
def engine() -> str:
    """The handshake comes before any storage: SQLite alone."""
    return "sqlite"


def connect(server: CollectorProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def seconds_until_closed(sock: socket.socket, opened: float, bound: float) -> float:
    """Read until the collector closes `sock`; seconds since `opened`, or fail past `bound`."""
    try:
        while True:
            left = opened + bound - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            if not sock.recv(65536):
                return time.monotonic() - opened
    except ConnectionResetError:  # an abort
        return time.monotonic() - opened
    except TimeoutError:
        pass
    pytest.fail(f"connection still open {bound:g} s after it was made")


def test_silent_connections_are_closed_at_header_timeout(
    start_collector: Callable[..., CollectorProcess], tls_files: tuple[str, str, str]
) -> None:
    server = start_collector(tls=tls_files, args=["--header-timeout", str(HEADER_TIMEOUT)])
    opened = [(connect(server), time.monotonic()) for _ in range(20)]
    held = [seconds_until_closed(sock, at, CLOSED_BOUND) for sock, at in opened]
    for sock, _ in opened:
        sock.close()
    assert min(held) >= HEADER_TIMEOUT * 0.9, held
    figures = {"test": "tls-silent", "connections": len(held), "header_timeout_s": HEADER_TIMEOUT}
    figures.update(held_min_s=round(min(held), 3), held_max_s=round(max(held), 3))
    print("FIGURES " + json.dumps(figures))
    log = server.log()
    assert f"TLS handshake not complete within {HEADER_TIMEOUT:g} s" in log, log
    with server.client() as client:
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("part", ["half", "whole"])
def test_a_stalled_client_hello_is_closed_at_header_timeout(
    start_collector: Callable[..., CollectorProcess], tls_files: tuple[str, str, str], part: str
) -> None:
    hello = client_hello()
    sent = hello[: len(hello) // 2] if part == "half" else hello
    server = start_collector(tls=tls_files, args=["--header-timeout", str(HEADER_TIMEOUT)])
    with connect(server) as sock:
        opened = time.monotonic()
        sock.sendall(sent)
        held = seconds_until_closed(sock, opened, CLOSED_BOUND)
    assert held >= HEADER_TIMEOUT * 0.9


def test_unfinished_handshakes_do_not_hold_up_a_stop(
    start_collector: Callable[..., CollectorProcess], tls_files: tuple[str, str, str]
) -> None:
    server = start_collector(tls=tls_files, args=["--header-timeout", "60"])
    hello = client_hello()
    silent = [connect(server) for _ in range(10)]
    for sock in silent[:5]:
        sock.sendall(hello[: len(hello) // 2])
    # Connections are accepted in order: once /healthz answers, the ten are in their handshake.
    with server.client() as client:
        assert client.get("/healthz").status_code == 200
    began = time.monotonic()
    assert server.stop() == 0, server.log()
    stopped_in = time.monotonic() - began
    for sock in silent:
        seconds_until_closed(sock, began, 5)
        sock.close()
    assert stopped_in < 5, server.log()
    assert "Traceback" not in server.log(), server.log()


@pytest.fixture
def crowd_descriptors() -> Iterator[None]:
    """This process holds the silent sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SILENT_CROWD + 256
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"needs {wanted} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("crowd_descriptors")
def test_more_silent_connections_than_descriptors_do_not_shut_out_healthz(
    start_collector: Callable[..., CollectorProcess], tls_files: tuple[str, str, str]
) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit to lower the collector's descriptor limit")
    # A head deadline far beyond the test: only the connection bound can make room.
    server = start_collector(
        tls=tls_files,
        args=["--header-timeout", "60"],
        wrapper=["prlimit", f"--nofile={COLLECTOR_NOFILE}:{COLLECTOR_NOFILE}", "--"],
    )
    silent = [connect(server) for _ in range(SILENT_CROWD)]
    latencies = []
    try:
        with server.client() as client:
            for _ in range(HEALTHZ_PROBES):
                started = time.monotonic()
                # A new connection, handshake included, as a new client would.
                answer = client.get("/healthz", headers={"Connection": "close"}, timeout=10)
                latencies.append(time.monotonic() - started)
                assert answer.status_code == 200, answer.text
    except httpx.TransportError as exc:
        pytest.fail(f"/healthz beside {SILENT_CROWD} silent connections: {exc!r}")
    finally:
        shed = sum(1 for sock in silent if _closed_now(sock))
        for sock in silent:
            sock.close()
    assert shed > 0
    log = server.log()
    # Room is made before descriptors run out: no accept() fails, and the
    # closings are one line and a count, not one each.
    assert "out of system resource" not in log, log[:2000]
    assert len(log.splitlines()) < 10, log[:2000]
    print(
        "FIGURES "
        + json.dumps(
            {
                "test": "tls-silent-crowd",
                "collector_nofile": COLLECTOR_NOFILE,
                "silent_connections": SILENT_CROWD,
                "closed_by_the_collector": shed,
                "healthz_median_s": round(sorted(latencies)[len(latencies) // 2], 3),
                "healthz_worst_s": round(max(latencies), 3),
            }
        )
    )


def _closed_now(sock: socket.socket) -> bool:
    """Whether the collector has closed `sock` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
