#!/usr/bin/env python3
"""bench/events_store: events into SQLite through the events store, against bare inserts.

Builds an NDJSON body of small app events, reads it as POST /api/v1/events
does (`protocols.app_events`), stores it in transactions of 5,000 through
`store_events` (indexes, duplicate check, counts, full-text index), then
stores the same payloads as bare multi-row INSERTs into a table with no
index: the baseline of the same run on the same disk, with the collector's
SQLite settings. Then times a context id page at that size. Prints
events/s (wall and CPU) and the ratio to the baseline.

usage: python bench/events_store.py [--quick] [--events N]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from telemd.collector.events.model import Event
from telemd.collector.events.protocols import app_events
from telemd.collector.events.query import EventQuery, find_events
from telemd.collector.events.store import store_events, store_stream
from telemd.collector.store.base import Store, open_engine

TRANSACTION = 5000
ROWS_PER_STATEMENT = 50


def count() -> int:
    if "--events" in sys.argv:
        return int(sys.argv[sys.argv.index("--events") + 1])
    return 20_000 if "--quick" in sys.argv else 100_000


def body(n: int) -> bytes:
    return b"".join(
        json.dumps(
            {"app": f"app-{i % 30}", "event": f"step_{i % 20}", "context_id": f"run-{i // 10}",
             "level": "info", "msg": f"line {i} of the benchmark", "timestamp": 1796637600 + i}
        ).encode() + b"\n"
        for i in range(n)
    )  # fmt: skip


def timed(work: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    n = count()
    directory = Path(tempfile.mkdtemp(prefix="bench-events-"))
    store = Store(open_engine(f"sqlite:///{directory / 'events.db'}"))
    store.migrate()
    data = body(n)
    events: list[Event] = []
    parse_wall, parse_cpu = timed(lambda: events.extend(app_events(data, "", time.time())))

    def store_all() -> None:
        stream = store_stream(store, "events", "127.0.0.1", {}, time.time())
        for start in range(0, n, TRANSACTION):
            store_events(store, stream, events[start : start + TRANSACTION], time.time(), start)

    store_wall, store_cpu = timed(store_all)

    bare = Store(open_engine(f"sqlite:///{directory / 'bare.db'}"))
    with bare.transaction() as session:
        session.execute("CREATE TABLE bare (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    payloads = [event.payload.decode() for event in events]

    def bare_all() -> None:
        for start in range(0, n, TRANSACTION):
            with bare.transaction() as session:
                for first in range(start, min(start + TRANSACTION, n), ROWS_PER_STATEMENT):
                    chunk = payloads[first : first + ROWS_PER_STATEMENT]
                    rows = ", ".join(["(?)"] * len(chunk))
                    session.execute(f"INSERT INTO bare (payload) VALUES {rows}", chunk)

    bare_wall, bare_cpu = timed(bare_all)
    context_ms = timed(lambda: find_events(store, EventQuery(context_id=f"run-{n // 20}"), ()))[0]
    print(f"events: {n:,}, SQLite in a temporary directory")
    print(f"parse (app_events): {n / parse_wall:,.0f} events/s wall, {n / parse_cpu:,.0f} CPU")
    print(f"store_events: {n / store_wall:,.0f} events/s wall, {n / store_cpu:,.0f} CPU")
    print(f"bare inserts (baseline): {n / bare_wall:,.0f} rows/s wall, {n / bare_cpu:,.0f} CPU")
    print(f"ratio store/bare: {bare_wall / store_wall:.2f} wall, {bare_cpu / store_cpu:.2f} CPU")
    print(f"context_id page at {n:,} events: {context_ms * 1000:.2f} ms")
    store.close()
    bare.close()
    shutil.rmtree(directory)


if __name__ == "__main__":
    main()
