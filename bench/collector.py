"""Benchmark telemd-collector: records/s stored, per format and per engine.

    python bench/collector.py [--engines sqlite,postgresql] [--records 40000]
                              [--batch 500] [--senders 8] [--check]

For each engine, a real collector (subprocess, plain HTTP on 127.0.0.1) is
fed by SENDERS concurrent clients in every format: NDJSON and JSON-array
batches of BATCH records, and the single-record "headers" and "json" formats.
In the same run, on the same database and schema, the baseline: raw
INSERTs of prepared rows, BATCH per transaction, with the collector's
durability settings. Prints records/s and the ratio to the baseline;
--check exits 1 when a target is missed (NDJSON into SQLite >= 20,000/s and
>= 0.5x baseline; NDJSON into PostgreSQL >= 10,000/s).

A quarter of the records are crashes with a backtrace (50 problems, 500
machines, two builds), so the problem counts are kept as in a fleet.

Also in the same run, the writer's storage path alone (`Store.write` and its
parts, the same prepared rows, BATCH per transaction), on three databases:
the record table as it was before search (schema 2), with the search
indexes, and with problems and the summary's rollups too (the full schema),
fed in ROUNDS alternating rounds so that a change in the machine's load
weighs on all three alike. The full schema's time includes what the request
threads do for the writer (`Store.sign`: signatures) as well. Each also
prints this process's CPU time per record (on SQLite, all of the work; on
PostgreSQL the server's share is not in it), steadier than rates under load. Target: the full
schema >= 0.8x of the schema-2 rate (today's ingest); the rollups' own share
is the full schema's rate against the search schema's. At the collector
level, NDJSON into a collector run with --no-rollups alternates the same
way with NDJSON into the full one.

Every figure is printed with the load average it was measured under.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "collector")]

import collector_pg  # noqa: E402
from collector_proc import BATCH_HEADERS, CollectorProcess, headers_request, json_request  # noqa: E402

from telemd.collector.ingest import records as ingest  # noqa: E402
from telemd.collector.ingest.records import CLEAR_LINUX_TID, RECORD_COLUMNS  # noqa: E402
from telemd.collector.store.base import Store, insert_sql, open_engine  # noqa: E402

TARGETS = {"sqlite": (20_000.0, 0.5), "postgresql": (10_000.0, None)}
ROLLUP_TARGET = 0.8
SEARCH_SCHEMA = 5  # migrations: 3 events, 4 problems, 5 search, 6 summary rollups
ROUNDS = 5  # alternating rounds of the storage path and of ndjson with and without rollups
SINGLE_SHARE = 20  # single-record formats send records/SINGLE_SHARE records


def make_records(n: int) -> list[dict[str, Any]]:
    now = int(time.time())
    return [
        {
            "record_format_version": "4",
            "classification": (
                "org.clearlinux/crash/clr" if i % 4 == 0 else f"org.clearlinux/bench/c{i % 16}"
            ),
            "severity": str(1 + i % 4),
            "machine_id": f"machine{i % 500:025d}",
            "creation_timestamp": str(now),
            "arch": "x86_64",
            "host_type": "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-8.2",
            "build": str(41000 + i % 2),
            "kernel_version": "6.1.0-13-amd64",
            "payload_format_version": "1",
            "system_name": "debian",
            "board_name": "no_bn_file|no_bv_file",
            "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
            "bios_version": "1.16.3-debian-1.16.3-2",
            "event_id": uuid.uuid4().hex,
            "payload": (
                f"Process: /usr/bin/prog{i % 50}\nPID: {i}\nSignal: 11\nCrashes: 1\n\n"
                f"Backtrace (TID {i}):\n#0 raise() - [libc.so.6] +0x1\n"
                f"#1 fail_{i % 50}() - [libfoo.so.1] +0x{i:x}\n#2 main() - [/usr/bin/prog] +0x2\n"
            ),
            "record_id": uuid.uuid4().hex,
        }
        for i in range(n)
    ]


def batch_requests(records: list[dict[str, Any]], batch: int, fmt: str) -> list[tuple[Any, ...]]:
    requests = []
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        if fmt == "ndjson":
            body = b"".join(json.dumps(r).encode() + b"\n" for r in chunk)
            headers = BATCH_HEADERS
        else:
            body = json.dumps(chunk).encode()
            headers = {**BATCH_HEADERS, "Content-Type": "application/json"}
        requests.append(("/api/v1/records", headers, body, len(chunk)))
    return requests


def single_requests(records: list[dict[str, Any]], fmt: str) -> list[tuple[Any, ...]]:
    make = headers_request if fmt == "headers" else json_request
    return [("/", *make(r), 1) for r in records]


def send_all(port: int, requests: list[tuple[Any, ...]], senders: int) -> float:
    """Send `requests` from `senders` concurrent clients; return the seconds taken.

    Each sender is a thread with one keep-alive http.client connection: the
    lightest client the standard library has, so that on two cores the
    figures are the collector's and not the client's.
    """
    queue = list(reversed(requests))
    errors: list[str] = []

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while queue and not errors:
                try:
                    path, headers, body, n = queue.pop()
                except IndexError:
                    return
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                if response.status not in (200, 201):
                    errors.append(f"{response.status}: {answer[:300]!r}")
                elif n > 1 and json.loads(answer)["accepted"] != n:
                    errors.append(f"batch not fully stored: {answer[:300]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - start


def raw_baseline(db_url: str, records: list[dict[str, Any]], batch: int) -> float:
    """Rows/s of plain INSERTs of prepared rows, one transaction per batch."""
    Store(open_engine(db_url)).migrate()
    engine = open_engine(db_url)
    session: Any = engine.connect()
    placeholder = "?" if engine.name == "sqlite" else "%s"
    sql = insert_sql(placeholder)
    ints = {"record_format_version", "severity", "creation_timestamp", "payload_format_version"}
    rows = [
        (time.time(), *(int(r[c]) if c in ints else r[c] for c in RECORD_COLUMNS[2:]))
        for r in records
    ]
    rows = [
        (row[0], uuid.uuid4().hex, "6907c830-eed9-4ce9-81ae-76daf8d88f0f", *row[1:]) for row in rows
    ]
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        session.begin()
        if engine.name == "sqlite":
            session.conn.executemany(sql, rows[i : i + batch])
        else:
            with session.conn.cursor() as cursor:
                cursor.executemany(sql, rows[i : i + batch])
        session.commit()
    elapsed = time.perf_counter() - start
    session.close()
    return len(rows) / elapsed


STORAGE_PATHS = (("store-v2", 2), ("store-search", SEARCH_SCHEMA), ("store-rollups", 0))


def storage_path(
    engine: str, new_url: Any, records: list[dict[str, Any]], batch: int
) -> list[tuple[str, str, int, float]]:
    """Rows/s of the writer's storage path on schema 2, the search schema and the full one."""
    rules = ingest.Rules(frozenset({CLEAR_LINUX_TID}), 8192)
    rows = [
        ingest.validate_record(r, r["payload"], tid=CLEAR_LINUX_TID, record_id=r["record_id"],
                               rules=rules)
        for r in records
    ]  # fmt: skip
    stores = {}
    for label, schema in STORAGE_PATHS:
        store = stores[label] = Store(open_engine(new_url(label)))
        store.migrate(schema) if schema else store.migrate()
    seconds = dict.fromkeys(stores, 0.0)
    cpu = dict.fromkeys(stores, 0.0)
    per_round = -(-len(rows) // ROUNDS)
    for start in range(0, len(rows), per_round):
        for label, schema in STORAGE_PATHS:
            store, began, cpu_began = stores[label], time.perf_counter(), time.process_time()
            for i in range(start, min(start + per_round, len(rows)), batch):
                chunk = rows[i : min(i + batch, start + per_round)]
                if schema:  # the insert alone, as Store.write ran it before the rollups
                    with store.transaction() as session:
                        session.insert(chunk, time.time())
                else:
                    store.write([chunk], time.time(), [store.sign(chunk)])
            seconds[label] += time.perf_counter() - began
            cpu[label] += time.process_time() - cpu_began
    results = []
    for label, spent in seconds.items():
        stores[label].close()
        rate, us = len(rows) / spent, cpu[label] / len(rows) * 1e6
        results.append((engine, label, len(rows), rate))
        print(
            f"  {engine:<10} {label:<17} {len(rows):>7} records  {rate:>9,.0f} rows/s  "
            f"{us:5.1f} us CPU/record  {load()}"
        )
    return results


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f}"


def stored_count(db_url: str) -> int:
    store = Store(open_engine(db_url))
    with store._reader() as session:
        (n,) = session.fetch("SELECT count(*) FROM records")[0]
    store.close()
    return int(n)


def run_engine(
    engine: str, new_url: Any, args: argparse.Namespace, workdir: str
) -> list[tuple[str, str, int, float]]:
    db_url = new_url("bench")
    # The baseline goes first, into the empty database: the conditions most
    # favourable to it, so the ratio errs against the collector.
    baseline = raw_baseline(db_url, make_records(args.records), args.batch)
    results = [(engine, "raw-insert", args.records, baseline)]
    print(f"  {engine:<10} {'raw-insert':<17} {args.records:>7} records  {baseline:>9,.0f} rows/s")
    results += storage_path(engine, new_url, make_records(args.records), args.batch)
    # One address sends everything here: no per-client ingest limit.
    proc = CollectorProcess(db_url, workdir, args=["--ingest-rate-limit", "0"]).wait_ready()
    # The same records into a collector that keeps no problems or counts, on
    # a database of its own, in rounds that alternate with the full one.
    bare = CollectorProcess(
        new_url("bare"), workdir, args=["--ingest-rate-limit", "0", "--no-rollups"]
    ).wait_ready()
    try:
        seconds = {"ndjson": 0.0, "ndjson-no-rollups": 0.0}
        n = args.records // ROUNDS
        before = stored_count(db_url)
        for _ in range(ROUNDS):
            for fmt, port in (("ndjson-no-rollups", bare.port), ("ndjson", proc.port)):
                requests = batch_requests(make_records(n), args.batch, "ndjson")
                seconds[fmt] += send_all(port, requests, args.senders)
        if stored_count(db_url) - before != n * ROUNDS:
            raise SystemExit(f"{engine}/ndjson: sent {n * ROUNDS}, stored fewer")
        for fmt, spent in seconds.items():
            rate = n * ROUNDS / spent
            results.append((engine, fmt, n * ROUNDS, rate))
            print(f"  {engine:<10} {fmt:<17} {n * ROUNDS:>7} records  {rate:>9,.0f}/s  {load()}")
        bare.stop()
        for fmt in ("json-array", "headers", "json"):
            n = args.records if fmt == "json-array" else args.records // SINGLE_SHARE
            records = make_records(n)
            if fmt == "json-array":
                requests = batch_requests(records, args.batch, fmt)
            else:
                requests = single_requests(records, fmt)
            before = stored_count(db_url)
            elapsed = send_all(proc.port, requests, args.senders)
            stored = stored_count(db_url) - before
            if stored != n:
                raise SystemExit(f"{engine}/{fmt}: sent {n}, stored {stored}")
            results.append((engine, fmt, n, n / elapsed))
            print(f"  {engine:<10} {fmt:<17} {n:>7} records  {n / elapsed:>9,.0f}/s  {load()}")
    finally:
        bare.stop()
        proc.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    print(
        f"telemd-collector bench: {args.senders} senders, batches of {args.batch}, "
        f"{os.cpu_count()} CPUs"
    )
    workdir = tempfile.mkdtemp(prefix="telemd-bench-")
    results: list[tuple[str, str, int, float]] = []
    for engine, new_url in collector_pg.each_engine(args.engines.split(","), workdir):
        results += run_engine(engine, new_url, args, workdir)
    return report(results, args.check)


def report(results: list[tuple[str, str, int, float]], check: bool) -> int:
    def rate(engine: str, fmt: str) -> float | None:
        return next((r for e, f, _, r in results if (e, f) == (engine, fmt)), None)

    print(f"\n{load()}\nengine      format              records/s   x raw-insert")
    for engine, fmt, _, value in results:
        base = rate(engine, "raw-insert")
        if fmt.startswith("store-"):
            base = rate(engine, "store-v2")
            ratio = f"{value / base:.2f} x store-v2" if base and fmt != "store-v2" else "-"
        else:
            ratio = f"{value / base:.2f}" if base and fmt != "raw-insert" else "-"
        print(f"{engine:<11} {fmt:<18} {value:>10,.0f}   {ratio}")
    failed = False
    for engine, (floor, ratio_floor) in TARGETS.items():
        got = rate(engine, "ndjson")
        if got is None:
            continue
        base = rate(engine, "raw-insert") or 0.0
        ok = got >= floor and (ratio_floor is None or got >= ratio_floor * base)
        failed |= not ok
        wanted = f">= {floor:,.0f}/s" + (f" and >= {ratio_floor}x raw" if ratio_floor else "")
        print(f"target {engine} ndjson {wanted}: {'met' if ok else 'MISSED'}")
    for engine in TARGETS:
        before, search = rate(engine, "store-v2"), rate(engine, "store-search")
        full = rate(engine, "store-rollups")
        if before and search and full:
            ok = full >= ROLLUP_TARGET * before
            failed |= not ok
            print(
                f"target {engine} search + rollups >= {ROLLUP_TARGET}x store-v2: "
                f"{full / before:.2f}, {'met' if ok else 'MISSED'} "
                f"(rollups alone: {full / search:.2f}x store-search)"
            )
        full, bare = rate(engine, "ndjson"), rate(engine, "ndjson-no-rollups")
        if full and bare:
            print(f"{engine} ndjson with rollups: {full / bare:.2f}x ndjson-no-rollups")
    return 1 if failed and check else 0


if __name__ == "__main__":
    sys.exit(main())
