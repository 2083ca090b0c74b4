"""Benchmark the collector's read side as the database grows: 100k, 1M, 10M records.

    python bench/queries.py [--engines sqlite,postgresql] [--max 1000000]
                            [--machines 5000] [--days 30] [--bulk] [--keep DIR]

Records are the rows `telemd.collector.ingest.records.validate_record`
produces (one row is checked against it; the rest are built in the same
shape, fast enough to load 10 million on two cores), with received_at
times spread evenly over --days days, as a fleet's would. They go in one of
two ways:
- by default, through the store's write path, the one the collector's
  writer thread runs for every ingest request: `Store.write`, 5,000 rows a
  transaction, with the collector's durability settings, full-text index
  and rollups; one database grows through the sizes;
- with --bulk, as into a database being upgraded: the writer's insert
  (`Session.insert`) into the schema before search (version 2), then
  `Store.migrate()`, whose migrations build the search indexes and fill the
  rollups from the records; a fresh database per size. Several times
  faster, for the 10,000,000 row.

With --keep DIR, the databases (SQLite files, a PostgreSQL cluster) stay in
DIR, and a later run with --bulk and the same DIR times the sizes already
loaded there again instead of loading them (after `Store.migrate()`, so
migrations added since apply): the 10,000,000 row is loaded once.

At each size, every query runs once to warm the cache, then 5 times; the
median is printed in milliseconds, and at the end the ratio of the largest
size to the smallest. Targets: under 100 ms, no more than 2x slower at the
largest size than at 100,000.

Payloads are the probes' own: crash reports laid out by crashprobe's
report module (3,000 distinct stacks), the klog samples through
klogscanner's parser, uncaught exceptions through the Python probe's hook
and failed units through journalprobe's; which problem a record reports is
drawn from a Zipf distribution, as a fleet's few top crashes dominate. With
--bulk, `telemd-collector reprocess` then groups the loaded records into
problems, as an upgrade to the problems schema would.

The problem pages are timed through telemd.collector.problems.queries, as
their routes call them: the overview, the first page of problems by
occurrences, the detail of the top problem and the builds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "collector")]

import collector_pg  # noqa: E402

from telemd.collector.ingest import records as ingest  # noqa: E402
from telemd.collector.ingest.records import CLEAR_LINUX_TID, RECORD_COLUMNS  # noqa: E402
from telemd.collector.problems import queries as problems  # noqa: E402
from telemd.collector.problems.reprocess import reprocess  # noqa: E402
from telemd.collector.store.base import Store, open_engine  # noqa: E402
from telemd.collector.store.query import RecordQuery  # noqa: E402

SIZES = (100_000, 1_000_000, 10_000_000)
ROWS_PER_WRITE = 5000  # at most
# The schema before the search indexes and rollups (see --bulk).
BEFORE_SEARCH = 2
RUNS = 5
TARGET_MS = 100.0
TARGET_GROWTH = 2.0
DAY = 86400
CRASH_STACKS = 3000
PYTHON_PROBLEMS = 50
FAILED_UNITS = 100
FUNCTIONS = [f"func_{i}" for i in range(2000)]
# What each record of a round of 8 is: most report a problem, two do not.
KINDS = ("crash/clr", "crash/unknown", "kernel", "kernel", "python", "unit", "hello", "mce")
PLAIN_CLASSES = {
    "hello": "org.clearlinux/hello/world",
    "mce": "org.clearlinux/mce/corrected",
}
BUILDS_PAGE = 100  # the builds route's default limit
# One payload in RARE_EVERY holds the rare word the full-text query looks for.
RARE_EVERY = 10_000
RARE_WORD = "zebrafish_overflow"


def crash_payloads(rng: random.Random, kind: str) -> list[str]:
    """Reports of distinct crashes, as crashprobe lays them out."""
    from telemd_probes.crash.report import Crash, CrashKind, Frame, Thread
    from telemd_probes.crash.report import payload as crash_payload

    crash_kind = CrashKind.CLR if kind == "crash/clr" else CrashKind.UNKNOWN
    texts = []
    for n in range(CRASH_STACKS):
        frames = [Frame("raise", "/usr/lib64/libc.so.6", 0x3F0A1)] + [
            Frame(
                rng.choice(FUNCTIONS),
                f"/usr/lib64/libmod{rng.randrange(50)}.so.1",
                rng.randrange(1 << 20),
            )
            for _ in range(5)
        ]
        program = f"/usr/bin/prog{n % 300}"
        crash = Crash(program, program[9:], 1000 + n, 11, (Thread(1000 + n, tuple(frames)),))
        texts.append(crash_payload(crash, crash_kind, 1 + n % 3))
    return texts


PYTHON_PROGRAM = """
def handle_{n}(text):
    return int(text)

def main():
    handle_{n}("not a number {n}")
"""


def python_payloads() -> list[str]:
    """Uncaught exceptions of distinct programs, through the Python probe's payload."""
    from telemd_probes.python import payload as python_payload

    texts = []
    for n in range(PYTHON_PROBLEMS):
        scope: dict[str, Any] = {}
        path = f"/usr/lib/app{n}/main.py"
        exec(compile(PYTHON_PROGRAM.format(n=n), path, "exec"), scope)
        try:
            scope["main"]()
        except ValueError as exc:
            texts.append(python_payload(type(exc), exc, exc.__traceback__, None))
    return texts


class Payloads:
    """Per kind, the (classification, payload) pairs and the Zipf weights to draw them."""

    def __init__(self, rng: random.Random) -> None:
        import probe_payloads

        kernel = [
            (event.classification, event.payload())
            for sample in sorted((probe_payloads.DATA / "klog").glob("*.kmsg"))
            for event in probe_payloads.kernel_events(sample.stem)
        ]
        units = [
            probe_payloads.failed_unit(f"svc{n}.service", ("exit-code", "signal", "timeout")[n % 3])
            for n in range(FAILED_UNITS)
        ]
        self.pools: dict[str, list[tuple[str, str]]] = {
            "crash/clr": [
                ("org.clearlinux/crash/clr", text) for text in crash_payloads(rng, "crash/clr")
            ],
            "crash/unknown": [
                ("org.clearlinux/crash/unknown", text)
                for text in crash_payloads(rng, "crash/unknown")
            ],
            "kernel": kernel,
            "python": [("org.clearlinux/python/exception", text) for text in python_payloads()],
            "unit": units,
        }
        self.weights = {
            kind: list(itertools.accumulate(1 / (k + 1) for k in range(len(pool))))
            for kind, pool in self.pools.items()
        }

    def draw(self, rng: random.Random, i: int) -> tuple[str, str]:
        kind = KINDS[i % len(KINDS)]
        if kind in PLAIN_CLASSES:
            frames = " ".join(rng.choice(FUNCTIONS) + "()" for _ in range(4))
            classification, text = PLAIN_CLASSES[kind], f"Status: ok\nSeen: {frames}\n"
        else:
            pool = self.pools[kind]
            [(classification, text)] = rng.choices(pool, cum_weights=self.weights[kind])
        if i % RARE_EVERY == 0:
            text += f"\n{RARE_WORD}\n"
        return classification, text


class Loader:
    """Rows in the shape validate_record gives, written as the collector's writer does."""

    def __init__(
        self,
        store: Store,
        machines: int,
        days: int,
        total: int,
        seed: int = 1,
        bulk: bool = False,
    ) -> None:
        self.store = store
        self.bulk = bulk
        self.rng = random.Random(seed)
        self.machines = [f"{i:032x}" for i in range(machines)]
        self.start = time.time() - days * DAY
        self.step = days * DAY / total
        self.total = total
        self.loaded = 0
        self.payloads = Payloads(self.rng)
        self.template = self._checked_template()

    def _checked_template(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "record_format_version": "4",
            "classification": "org.clearlinux/crash/clr",
            "severity": "1",
            "machine_id": self.machines[0],
            "creation_timestamp": "1700000000",
            "arch": "x86_64",
            "host_type": "QEMU|Standard PC (Q35 + ICH9, 2009)|pc-q35-8.2",
            "build": "41000",
            "kernel_version": "6.6.8-1387.native",
            "payload_format_version": "1",
            "system_name": "clear-linux-os",
            "board_name": "no_bn_file|no_bv_file",
            "cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
            "bios_version": "1.16.3",
            "event_id": uuid.uuid4().hex,
        }
        rules = ingest.Rules(frozenset({CLEAR_LINUX_TID}), 8192)
        text = self.payloads.pools["crash/clr"][0][1]
        row = ingest.validate_record(
            fields, text, tid=CLEAR_LINUX_TID, record_id=uuid.uuid4().hex, rules=rules
        )
        built = self._row(fields, 1, text)
        if [type(v) for v in row[1:]] != [type(v) for v in built[1:]] or row[1:] != built[1:]:
            raise SystemExit(f"bench rows differ from the ingest's:\n{row}\n{built}")
        return fields

    def _row(self, fields: dict[str, object], i: int, text: str) -> tuple[object, ...]:
        values = {
            **fields,
            "record_id": uuid.uuid4().hex,
            "tid": CLEAR_LINUX_TID,
            "payload": text,
        }
        for name in ingest.INT_FIELDS:
            values[name] = int(str(values[name]))
        return tuple(values[name] for name in RECORD_COLUMNS)

    def load_to(self, total: int) -> float:
        """Load records until `total`; return records/s."""
        began = time.perf_counter()
        count = total - self.loaded
        rng = self.rng
        # At least 200 writes, so that received_at spreads over the days.
        per_write = max(1, min(ROWS_PER_WRITE, self.total // 200))
        while self.loaded < total:
            n = min(per_write, total - self.loaded)
            rows = []
            for i in range(self.loaded, self.loaded + n):
                fields = dict(self.template)
                classification, text = self.payloads.draw(rng, i)
                fields["classification"] = classification
                fields["severity"] = str(1 + rng.randrange(4))
                fields["machine_id"] = rng.choice(self.machines)
                fields["build"] = str(41000 + i * 20 // max(total, 1))
                fields["event_id"] = uuid.uuid4().hex
                rows.append(self._row(fields, i, text))
            received_at = self.start + self.loaded * self.step
            if self.bulk:
                with self.store.transaction() as session:
                    session.insert(rows, received_at)
            else:
                self.store.write([rows], received_at)
            self.loaded += n
        return count / (time.perf_counter() - began)


def timed(fn: Callable[[], Any]) -> float:
    """Median milliseconds of RUNS calls, after one to warm the cache."""
    fn()
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def queries(store: Store, now: float) -> dict[str, Callable[[], Any] | None]:
    week = now - 7 * DAY
    window = RecordQuery(
        classification="org.clearlinux/crash/*", since=now - 3 * DAY, until=now - DAY
    )
    top = problems.list_problems(store, problems.ProblemQuery(limit=1))["problems"]
    top_id = int(top[0]["id"]) if top else None
    pages: dict[str, Callable[[], Any] | None] = {
        "overview": lambda: problems.overview(store, now),
        "problems list": lambda: problems.list_problems(store, problems.ProblemQuery()),
        "problem detail": (lambda: problems.problem_detail(store, top_id)) if top_id else None,
        "builds": lambda: problems.list_builds(store, BUILDS_PAGE, now),
    }
    return {
        "summary": lambda: store.summary(),
        "summary since 7 days": lambda: store.summary(week),
        "wildcard + time range": lambda: store.records(window),
        "full text, rare word": lambda: store.records(RecordQuery(q=RARE_WORD)),
        "full text, common word": lambda: store.records(RecordQuery(q="func_17(")),
        "severity_min + machine": lambda: store.records(
            RecordQuery(severity_min=3, machine_id=f"{7:032x}")
        ),
        **pages,
    }


def run_engine(
    engine: str, new_url: Callable[[str, bool], str], sizes: Sequence[int], args: argparse.Namespace
) -> None:
    table: dict[int, dict[str, float | None]] = {}
    if args.bulk:
        for size in sizes:
            marker = Path(args.keep or "/nonexistent") / f"{engine}-{size}.json"
            if marker.exists():
                store = Store(open_engine(new_url(f"queries{size}", True)))
                began = time.perf_counter()
                store.migrate()
                print(
                    f"  {engine}: {size:>10,} records kept in {args.keep}, "
                    f"migrated in {time.perf_counter() - began:,.0f} s",
                    flush=True,
                )
                table[size] = measure(store, json.loads(marker.read_text())["now"])
                store.close()
                continue
            store = Store(open_engine(new_url(f"queries{size}", False)))
            store.migrate(BEFORE_SEARCH)
            loader = Loader(store, args.machines, args.days, size, bulk=True)
            rate = loader.load_to(size)
            began = time.perf_counter()
            store.migrate()
            built = time.perf_counter() - began
            began = time.perf_counter()
            _, found = reprocess(store)
            grouped = time.perf_counter() - began
            print(
                f"  {engine}: {size:>10,} records inserted ({rate:,.0f} records/s), "
                f"indexes and rollups built in {built:,.0f} s, "
                f"grouped into {found:,} problems in {grouped:,.0f} s",
                flush=True,
            )
            now = loader.start + size * loader.step
            if args.keep:
                marker.write_text(json.dumps({"now": now}))
            table[size] = measure(store, now)
            store.close()
    else:
        store = Store(open_engine(new_url("queries", False)))
        store.migrate()
        loader = Loader(store, args.machines, args.days, sizes[-1])
        for size in sizes:
            rate = loader.load_to(size)
            print(f"  {engine}: {size:>10,} records loaded ({rate:,.0f} records/s)", flush=True)
            table[size] = measure(store, loader.start + size * loader.step)
        store.close()
    print_table(engine, table)


def measure(store: Store, now: float) -> dict[str, float | None]:
    return {
        name: (timed(fn) if fn is not None else None) for name, fn in queries(store, now).items()
    }


def print_table(engine: str, table: dict[int, dict[str, float | None]]) -> None:
    sizes = sorted(table)
    names = list(table[sizes[0]])
    head = "".join(f"{size:>12,}" for size in sizes)
    print(f"\n{engine} (ms, median of {RUNS})")
    print(f"{'query':<26}{head}   x{sizes[0]:,}  target")
    for name in names:
        cells = [table[size][name] for size in sizes]
        shown = "".join(f"{c:>12.1f}" if c is not None else f"{'n/a':>12}" for c in cells)
        first, last = cells[0], cells[-1]
        if first is None or last is None:
            print(f"{name:<26}{shown}")
            continue
        growth = last / first if first else float("inf")
        ok = last < TARGET_MS and growth <= TARGET_GROWTH
        print(f"{name:<26}{shown}   {growth:>5.2f}  {'met' if ok else 'MISSED'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--max", type=int, default=1_000_000, help="largest size to load")
    parser.add_argument("--machines", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--bulk", action="store_true", help="insert, then build (see above)")
    parser.add_argument("--keep", metavar="DIR", help="keep the databases in DIR, reuse them")
    args = parser.parse_args(argv)
    sizes = [s for s in SIZES if s <= args.max] or [args.max]
    print(f"telemd-collector queries bench: sizes {sizes}, {os.cpu_count()} CPUs")
    workdir = args.keep or tempfile.mkdtemp(prefix="telemd-bench-")
    os.makedirs(workdir, exist_ok=True)
    for engine in args.engines.split(","):
        if engine == "sqlite":

            def sqlite_url(name: str, exists: bool) -> str:
                path = Path(workdir) / f"{name}.db"
                if not exists:
                    for stale in Path(workdir).glob(f"{name}.db*"):
                        stale.unlink()
                return f"sqlite:///{path}"

            run_engine(engine, sqlite_url, sizes, args)
        elif engine == "postgresql":
            reason = collector_pg.missing_reason()
            if reason:
                print(f"  postgresql skipped: {reason}")
                continue
            top = os.path.join(workdir, "pg") if args.keep else None
            server = collector_pg.start(durable=True, top=top)

            def pg_url(
                name: str, exists: bool, server: collector_pg.PostgresServer = server
            ) -> str:
                import psycopg

                if exists:
                    return server.url(name)
                with psycopg.connect(server.url(), autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                return server.create_database(name)

            try:
                run_engine(engine, pg_url, sizes, args)
            finally:
                server.stop()
    if not args.keep:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
