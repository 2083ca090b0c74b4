"""Benchmark the Go client's transports and the event queries of telemd-collector.

    python bench/events.py [--events 100000] [--sizes 100000,1000000] [--quick] [--check]
                           [--ingest-only]

Ingest: EVENTS slog lines (the Go client's, about 90 bytes each) through
the chunked `POST /` (application/jsonl, 64 KiB chunks) and through the
WebSocket on `/` (one message a line, sent as fast as the socket takes
them, then the empty binary message), into a real collector on SQLite,
and in the same run into a bare server of the same stack that parses and
discards (bench/bare_events_server.py). Prints events/s and the ratio,
and the CPU time each server spent an event (user + system, from /proc):
the figure that moves least when other work shares the cores.

Queries: the collector's database is filled with Vrooli events (20
scenarios, 1 in 10 a failure, 100 events a context id) up to each size in
SIZES, and the median time of `GET /api/v1/telemetry` (the Vrooli summary)
and `GET /api/v1/events?context_id=` is printed at each, over HTTP.

--check exits 1 when a target is missed: ingest >= 50,000 events/s and
>= 0.5x bare on each transport, each query under 50 ms at the largest size.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "collector")]

from collector_proc import CollectorProcess  # noqa: E402
from gostream import BINARY, CLOSE, TEXT, RawWebSocket, chunk, post_head, read_answer  # noqa: E402
from ports import free_port  # noqa: E402

from telemd.collector.events.model import make_event  # noqa: E402
from telemd.collector.events.store import store_events, store_stream  # noqa: E402
from telemd.collector.store.base import Store, open_engine  # noqa: E402

INGEST_TARGET = 50_000.0
RATIO_TARGET = 0.5
QUERY_TARGET_MS = 50.0
CHUNK = 64 * 1024
FAILURES = ("health_failed", "api_unreachable", "migration_failed")


def slog_lines(n: int) -> list[bytes]:
    return [
        b'{"time":"2026-12-07T10:00:00.%06d+00:00","level":"INFO","msg":"request done",'
        b'"path":"/api/items/%d","status":200,"ms":%d}\n' % (i % 1_000_000, i, i % 97)
        for i in range(n)
    ]


def unmasked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame with the all-zero mask: valid, and no XOR to pay for in the client."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, 0x80 | size])
    else:
        head = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", size)
    return head + b"\0\0\0\0" + payload


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post(port: int, lines: list[bytes]) -> float:
    body = b"".join(lines)
    chunks = [chunk(body[i : i + CHUNK]) for i in range(0, len(body), CHUNK)]
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(post_head(port))
        for piece in chunks:
            sock.sendall(piece)
        sock.sendall(b"0\r\n\r\n")
        status, _, answer = read_answer(sock)
    elapsed = time.perf_counter() - start
    if (status, answer) != (200, str(len(lines)).encode()):
        raise SystemExit(f"POST / answered {status} {answer!r}")
    return len(lines) / elapsed


def websocket(port: int, lines: list[bytes]) -> float:
    frames = b"".join(unmasked_frame(TEXT, line) for line in lines)
    frames += unmasked_frame(BINARY, b"")
    ws = RawWebSocket(port, deflate=False)
    last: list[bytes] = []

    def read_counts() -> None:
        while True:
            opcode, payload = ws.receive()
            if opcode == CLOSE:
                return
            if opcode == TEXT:  # not the server's keep-alive pings
                last[:] = [payload]

    reader = threading.Thread(target=read_counts)
    start = time.perf_counter()
    reader.start()
    for i in range(0, len(frames), CHUNK):
        ws.sock.sendall(frames[i : i + CHUNK])
    reader.join()
    elapsed = time.perf_counter() - start
    ws.close()
    if last != [str(len(lines) + 1).encode()]:
        raise SystemExit(f"the WebSocket's last count was {last!r}")
    return len(lines) / elapsed


def start_bare() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_events_server.py"), str(port)]
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the bare server did not start")


Ingest = tuple[str, float, float, float, float]  # transport, stored/s, bare/s, CPU s of each


def ingest(events: int, workdir: str) -> list[Ingest]:
    lines = slog_lines(events)
    bare, bare_port = start_bare()
    results = []
    try:
        for name, send in (("POST / (jsonl, chunked)", post), ("WebSocket /", websocket)):
            collector = CollectorProcess(f"sqlite:///{workdir}/{len(results)}.db", workdir)
            try:
                collector.wait_ready()
                cpu = cpu_seconds(collector.proc.pid)
                stored = send(collector.port, lines)
                cpu = cpu_seconds(collector.proc.pid) - cpu
            finally:
                collector.stop()
            bare_cpu = cpu_seconds(bare.pid)
            baseline = send(bare_port, lines)
            bare_cpu = cpu_seconds(bare.pid) - bare_cpu
            results.append((name, stored, baseline, cpu / events, bare_cpu / events))
    finally:
        bare.terminate()
        bare.wait(10)
    return results


def fill(db_url: str, upto: int, have: int) -> None:
    """Store Vrooli events until `upto` are stored, the way the upload route stores them."""
    store = Store(open_engine(db_url))
    now = time.time()
    try:
        stream = store_stream(store, "vrooli", "127.0.0.1", {}, now)
        batch = []
        for i in range(have, upto):
            failure = i % 10 == 0
            name = FAILURES[i % 3] if failure else "health_ok"
            scenario = f"scenario-{i % 20}"
            obj = {"scenario": scenario, "event": name, "ts": now - (upto - i), "n": i}
            batch.append(
                make_event(
                    "vrooli",
                    obj,
                    received_at=now,
                    app=scenario,
                    name=name,
                    timestamp=obj["ts"],
                    context_id=f"ctx-{i // 100}",
                )
            )
            if len(batch) == 2000:
                store_events(store, stream, batch, now, i)
                batch = []
        if batch:
            store_events(store, stream, batch, now, upto)
    finally:
        store.close()


def median_ms(client, path: str, rounds: int = 21) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"GET {path} answered {answer.status_code}: {answer.text[:200]}")
    return statistics.median(times)


def queries(sizes: list[int], workdir: str) -> list[tuple[int, float, float, float]]:
    db_url = f"sqlite:///{workdir}/queries.db"
    collector = CollectorProcess(db_url, workdir).wait_ready()
    results = []
    have = 0
    try:
        with collector.client() as client:
            for size in sizes:
                start = time.perf_counter()
                fill(db_url, size, have)
                filled = (size - have) / (time.perf_counter() - start)
                have = size
                context = f"ctx-{size // 200}"
                summary = median_ms(client, "/api/v1/telemetry")
                by_context = median_ms(client, f"/api/v1/events?context_id={context}")
                results.append((size, summary, by_context, filled))
    finally:
        collector.stop()
    return results


def query_figures(sizes: list[int], workdir: str) -> list[str]:
    """Print the query times at each size; return the targets missed."""
    missed = []
    print()
    print("queries (median of 21, over HTTP):")
    print(f"{'stored events':>14} {'Vrooli summary ms':>18} {'?context_id= ms':>16}")
    rows = queries(sizes, workdir)
    for size, summary, by_context, _ in rows:
        print(f"{size:>14,} {summary:>18.1f} {by_context:>16.1f}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            f"growth x{last[0] / first[0]:g} events: summary x{last[1] / first[1]:.2f}, "
            f"context x{last[2] / first[2]:.2f}"
        )
    for size, summary, by_context, _ in rows[-1:]:
        if summary > QUERY_TARGET_MS or by_context > QUERY_TARGET_MS:
            missed.append(f"queries at {size}: {summary:.1f} / {by_context:.1f} ms")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--quick", action="store_true", help="20,000 events; sizes 10,000,100,000")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--ingest-only", action="store_true", help="no query figures")
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    missed = []
    with tempfile.TemporaryDirectory(prefix="bench-events-") as workdir:
        print(f"ingest: {events} slog lines, SQLite, in the same run as the bare server")
        print(f"load average: {os.getloadavg()[0]:.2f}")
        print(
            f"{'transport':<26} {'stored/s':>10} {'bare/s':>10} {'ratio':>6}"
            f" {'CPU us/event':>13} {'bare':>6}"
        )
        for name, stored, bare, cpu, bare_cpu in ingest(events, workdir):
            print(
                f"{name:<26} {stored:>10,.0f} {bare:>10,.0f} {stored / bare:>6.2f}"
                f" {cpu * 1e6:>13.1f} {bare_cpu * 1e6:>6.1f}"
            )
            if stored < INGEST_TARGET or stored / bare < RATIO_TARGET:
                missed.append(f"{name}: {stored:,.0f}/s, {stored / bare:.2f}x bare")
        print(f"load average: {os.getloadavg()[0]:.2f}")
        if not args.ingest_only:
            missed += query_figures(sizes, workdir)
    if args.check and missed:
        print("missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
