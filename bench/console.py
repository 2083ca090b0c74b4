"""Benchmark the console: each page's answer time with a million records stored.

    python bench/console.py [--engines sqlite,postgresql] [--records 1000000]
                            [--machines 5000] [--rounds 9] [--check]

For each engine, a database is filled through the store's own write (the
problems and counts kept as at ingest) with RECORDS records over 30 days
from MACHINES machines: heartbeats, and kernel oopses, warnings, hung tasks
and failed units made by the probes' own code; 20,000 app events are posted
to the running collector. A real collector then serves
the console; a logged-in client fetches every page ROUNDS times, one at a
time, and the median and slowest answer of each are printed, measured at the
client (the HTTP round trip included). Baseline, in the same run: GET
/healthz, a route that only pings the database. --check exits 1 when a
page's median exceeds 200 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "collector")]

import collector_pg  # noqa: E402
import probe_payloads  # noqa: E402
from access_tokens import make_token  # noqa: E402
from collector_proc import CollectorProcess  # noqa: E402
from console_client import log_in  # noqa: E402
from console_seed import HEARTBEAT, row  # noqa: E402

from telemd.collector.store.base import Store, open_engine  # noqa: E402

TARGET_MS = 200.0
DAYS = 30
BATCH = 5000
EVENTS = 20_000
EVENT_BATCH = 1000
BUILDS = ("41200", "41210", "41220", "41230")
UNITS = 200  # failed units of that many names: as many problems


def kinds() -> list[tuple[str, int, str]]:
    made = [probe_payloads.kernel(s) for s in ("bug_x86_nullderef", "warning_x86", "hungtask")]
    made += [probe_payloads.failed_unit(f"service{n}.service") for n in range(UNITS)]
    return [(c, 3, p) for c, p in made]


def fill(db_url: str, records: int, machines: int) -> float:
    """Store `records` over DAYS days; return records/s of the fill."""
    problems = kinds()
    store = Store(open_engine(db_url))
    start = time.perf_counter()
    now = time.time()
    try:
        store.migrate()
        for first in range(0, records, BATCH):
            day = DAYS - 1 - first * DAYS // records
            rows = []
            for i in range(first, min(records, first + BATCH)):
                machine = f"{i * 7919 % machines:032x}"
                build = BUILDS[min(len(BUILDS) - 1, (DAYS - day) * len(BUILDS) // DAYS)]
                # Two records in five are problems, the first few far more often than the rest.
                kind = problems[min(i * 31 % 997, i % len(problems))] if i % 5 < 2 else HEARTBEAT
                rows.append(row(kind[0], kind[1], machine, build, kind[2]))
            store.write([rows], now - day * 86400 - 3600)
    finally:
        store.close()
    return records / (time.perf_counter() - start)


def post_events(client: httpx.Client, count: int) -> None:
    """`count` events of 20 apps through the generic protocol, one in ten a failure."""
    for first in range(0, count, EVENT_BATCH):
        lines = [
            {"app": f"app{i % 20}", "event": "failed" if i % 10 == 0 else "done",
             "level": "error" if i % 10 == 0 else "info", "timestamp": time.time(), "n": i}
            for i in range(first, min(count, first + EVENT_BATCH))
        ]  # fmt: skip
        answer = client.post(
            "/api/v1/events",
            content=b"".join(json.dumps(line).encode() + b"\n" for line in lines),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert answer.status_code == 200, answer.text


def timed(client: httpx.Client, path: str, rounds: int) -> list[float]:
    answer = client.get(path)  # warm: templates compiled, connections pooled
    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:200]}"
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, path
    return times


def pages(client: httpx.Client) -> list[str]:
    """Every console page, with ids taken from the data."""
    api = client.get("/api/v1/problems", params={"limit": "1"}).json()["problems"][0]
    detail = client.get(f"/api/v1/problems/{api['id']}").json()
    record = detail["recent"][0]
    return [
        "/console/",
        "/console/problems",
        "/console/problems?kind=kernel&sort=machines&days=7",
        f"/console/problems/{api['id']}",
        "/console/builds",
        "/console/records",
        "/console/records?classification=org.clearlinux/kernel/bug&severity=3",
        f"/console/records?build={BUILDS[-1]}&created_in_days=1",
        f"/console/records/{record['record_id']}",
        f"/console/machines/{record['machine_id']}",
        "/console/apps",
        "/console/apps/tail",
        "/console/apps/tail?app=app7",
    ]


def run_engine(engine: str, db_url: str, args: argparse.Namespace, workdir: str) -> list[float]:
    rate = fill(db_url, args.records, args.machines)
    print(f"{engine}: {args.records:,} records stored at {rate:,.0f}/s")
    reader = make_token(db_url, "bench-reader", ["read"])
    proc = CollectorProcess(db_url, workdir).wait_ready()
    medians = []
    try:
        with proc.client(token=None) as poster:
            post_events(poster, EVENTS)
        with proc.client(token=reader) as client:
            baseline = statistics.median(timed(client, "/healthz", args.rounds))
            assert log_in(client, reader).status_code == 303
            print(f"  {'page':<66} {'median':>8} {'slowest':>8} {'x healthz':>9}")
            print(f"  {'/healthz (baseline)':<66} {baseline:>6.1f}ms")
            for path in pages(client):
                times = timed(client, path, args.rounds)
                median = statistics.median(times)
                medians.append(median)
                mark = "" if median <= TARGET_MS else "  OVER"
                print(
                    f"  {path[:66]:<66} {median:>6.1f}ms {max(times):>6.1f}ms "
                    f"{median / baseline:>8.1f}x{mark}"
                )
    finally:
        proc.stop()
    return medians


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="sqlite")
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--machines", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    medians: list[float] = []
    with tempfile.TemporaryDirectory(prefix="telemd-bench-console-") as workdir:
        starts: dict[str, Callable[[], tuple[str, Callable[[], None]]]] = {
            "sqlite": lambda: (f"sqlite:///{workdir}/console.db", lambda: None),
            "postgresql": lambda: _postgres(),
        }
        for engine in args.engines.split(","):
            if engine == "postgresql" and collector_pg.missing_reason():
                print(f"postgresql: skipped, {collector_pg.missing_reason()}")
                continue
            db_url, stop = starts[engine]()
            try:
                medians += run_engine(engine, db_url, args, workdir)
            finally:
                stop()
    worst = max(medians, default=0.0)
    ok = worst <= TARGET_MS
    print(f"target: every page's median <= {TARGET_MS:.0f} ms: {'met' if ok else 'MISSED'}")
    return 1 if args.check and not ok else 0


def _postgres() -> tuple[str, Callable[[], None]]:
    server = collector_pg.start(durable=True)
    return server.create_database("console"), server.stop


if __name__ == "__main__":
    raise SystemExit(main())
