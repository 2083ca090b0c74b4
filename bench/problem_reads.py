"""Benchmark the overview's top problems against their former query, in the same run.

    python bench/problem_reads.py [--engines sqlite,postgresql] [--sizes 100000,1000000]

Each size is loaded as `bench/queries.py --bulk` loads it (its Loader: the
probes' payloads, problems drawn from a Zipf distribution, 5,000 machines
over 30 days; then the migrations and `reprocess`). Then, ROUNDS times in
turn so that the machine's load weighs on both alike, the former top of
the week (the sum of every problem's `problem_days` rows of the last 7
days) and the present one (`problems/top.py`, index walks per day); the
answers must be equal. Prints each one's median in ms, their ratio and the
load average. The same for the summary's counts since a moment a quarter
and three quarters into its day: the former form, which read every record
of the bucket after the moment, against the present one, which reads the
nearer half. Last, the timing of `reprocess` (batches that each commit)
and of a retention purge of the oldest day, problem counts included.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT / "tests"), str(ROOT / "tests" / "collector")]

import collector_pg  # noqa: E402
import queries  # noqa: E402

from telemd.collector.problems.queries import TOP_DAYS, TOP_PROBLEMS  # noqa: E402
from telemd.collector.problems.reprocess import reprocess  # noqa: E402
from telemd.collector.problems.rollups import day_of  # noqa: E402
from telemd.collector.problems.top import top_problems  # noqa: E402
from telemd.collector.store import rollups as record_rollups  # noqa: E402
from telemd.collector.store.base import Retention, Store, open_engine  # noqa: E402

ROUNDS = 7
CALLS_PER_ROUND = 5
DAY = 86400


def summed(store: Store, first: int, last: int) -> list[tuple[int, int]]:
    """The former query: every problem of the window summed, then sorted."""
    with store.reading() as session:
        rows = session.fetch(
            "SELECT problem_id, CAST(sum(n) AS BIGINT) AS total FROM problem_days "
            "WHERE day >= ? AND day <= ? GROUP BY problem_id "
            "ORDER BY total DESC, problem_id DESC LIMIT ?",
            (first, last, TOP_PROBLEMS),
        )
    return [(int(p), int(n)) for p, n in rows]


def since_whole_bucket(store: Store, since: float) -> tuple[list[Any], list[Any]]:
    """The former summary counts since a moment: every record of the bucket it falls in after it."""
    hour, day = math.ceil(since / 3600), math.ceil(since / DAY)
    with store.reading() as session:
        classes = session.fetch(
            "SELECT classification, severity, sum(n), max(last_seen) FROM ("
            "SELECT classification, severity, n, last_seen FROM rollup_class_hours "
            "WHERE hour >= ? UNION ALL SELECT classification, severity, count(*), "
            "max(received_at) FROM records WHERE received_at >= ? AND received_at < ? "
            "GROUP BY classification, severity) AS parts GROUP BY classification, severity",
            (hour, since, hour * 3600.0),
        )
        machines = session.fetch(
            "SELECT machine_id, sum(n) AS total FROM ("
            "SELECT machine_id, n FROM rollup_machine_days WHERE day >= ? "
            "UNION ALL SELECT machine_id, count(*) FROM records "
            "WHERE received_at >= ? AND received_at < ? GROUP BY machine_id"
            ") AS parts GROUP BY machine_id ORDER BY total DESC, machine_id LIMIT ?",
            (day, since, day * float(DAY), record_rollups.MAX_MACHINES),
        )
    return classes, machines


def since_nearer_half(store: Store, since: float) -> tuple[list[Any], list[Any]]:
    with store.reading() as session:
        return (
            record_rollups.class_counts(session, since),
            record_rollups.machine_counts(session, since),
        )


def walked(store: Store, first: int, last: int) -> list[tuple[int, int]]:
    with store.reading() as session:
        return top_problems(session, first, last, TOP_PROBLEMS)


def median_ms(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(CALLS_PER_ROUND):
        began = time.perf_counter()
        fn()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def run(engine: str, url: str, size: int) -> None:
    store = Store(open_engine(url))
    store.migrate(queries.BEFORE_SEARCH)
    loader = queries.Loader(store, 5000, 30, size, bulk=True)
    loader.load_to(size)
    store.migrate()
    began = time.perf_counter()
    _, found = reprocess(store)
    grouped = time.perf_counter() - began
    now = loader.start + size * loader.step
    today = day_of(now)
    first, last = today - TOP_DAYS + 1, today
    if summed(store, first, last) != walked(store, first, last):
        raise SystemExit(f"{engine} {size}: the walk and the sum disagree")
    former: list[float] = []
    present: list[float] = []
    for _ in range(ROUNDS):
        former.append(median_ms(lambda: summed(store, first, last)))
        present.append(median_ms(lambda: walked(store, first, last)))
    a, b = statistics.median(former), statistics.median(present)
    load = os.getloadavg()[0]
    print(
        f"  {engine:<10} {size:>10,}  top of the week: sum {a:7.2f} ms, walk {b:6.2f} ms, "
        f"walk/sum {b / a:5.2f}; reprocess into {found:,} problems {grouped:,.0f} s; "
        f"load {load:.1f}",
        flush=True,
    )
    # A moment a quarter and one three quarters into its day: each form's cases.
    for since in (now - 7 * DAY - (now % DAY) + DAY / 4, now - 7 * DAY - (now % DAY) + 0.75 * DAY):
        whole, half = since_whole_bucket(store, since), since_nearer_half(store, since)
        if sorted(map(tuple, whole[0])) != sorted(map(tuple, half[0])) or whole[1] != half[1]:
            raise SystemExit(f"{engine} {size}: the summary since {since} differs")
        former, present = [], []
        for _ in range(ROUNDS):
            former.append(median_ms(lambda at=since: since_whole_bucket(store, at)))
            present.append(median_ms(lambda at=since: since_nearer_half(store, at)))
        a, b = statistics.median(former), statistics.median(present)
        print(
            f"  {engine:<10} {size:>10,}  summary since ({since % DAY / DAY:.2f} into its day): "
            f"whole bucket {a:7.2f} ms, nearer half {b:7.2f} ms, ratio {b / a:5.2f}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    began = time.perf_counter()
    purged = store.purge(Retention(days=29), now)
    print(
        f"  {engine:<10} {size:>10,}  purge of the oldest day: {purged:,} records in "
        f"{time.perf_counter() - began:,.1f} s; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"problem reads bench: sizes {sizes}, {os.cpu_count()} CPUs")
    workdir = tempfile.mkdtemp(prefix="telemd-bench-")
    try:
        for engine, new_url in collector_pg.each_engine(args.engines.split(","), workdir):
            for size in sizes:
                run(engine, new_url(f"problems{size}"), size)
    finally:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
