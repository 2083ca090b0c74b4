"""`reprocess` in batches on both engines: stopped, resumed, raced by a writer, counts exact.

A collector (another `Store` on the same database, as another process
would be) keeps storing records of the same problems while the rebuild
runs; the rebuild is stopped after a few batches and run again. At the end
every count must equal what the stored records add up to with the new
skip list, and the problems' first build must be the build of their
earliest record, whichever of the writer and the rebuild counted it first.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest
from collector_proc import row
from problems_counts import crash_payload, record_counts, stored_counts

from telemd.collector.problems import reprocess as rebuild
from telemd.collector.store.base import Store

NOW = 1_800_000_000.0
DAY = 86400
MACHINES = [f"{i:032x}" for i in range(5)]


class Stop(Exception):
    """Stands for the process being killed between two batches."""


def write(
    store: Store,
    rng: random.Random,
    when: float,
    build: str,
    n: int = 20,
    functions: tuple[str, ...] = tuple(f"fail_{i}" for i in range(6)),
) -> None:
    rows = [
        row(
            classification="org.clearlinux/crash/clr",
            payload=crash_payload(rng.choice(functions), 1 + rng.randrange(3)),
            machine_id=rng.choice(MACHINES),
            build=build,
        )
        if rng.random() < 0.8
        else row(classification="org.test/other/x", machine_id=rng.choice(MACHINES), build=build)
        for _ in range(n)
    ]
    store.write([rows], when)


def skip(store: Store, pattern: str) -> None:
    with store.transaction() as session:
        session.execute("INSERT INTO skip_frames (pattern) VALUES (?)", (pattern,))


def test_a_stopped_and_raced_reprocess_counts_exactly(stores: Callable[[], Store]) -> None:
    rng = random.Random(5)
    first = stores()
    for i in range(15):
        late = ("late",) if i >= 10 else ()
        write(first, rng, NOW + i * DAY / 4, build=str(100 + i // 5), functions=("fail_1", *late))
    # fail_1 and fail_2 now group by their helper frame: problems change.
    skip(first, "fail_1")
    skip(first, "fail_2")
    collector, tool = stores(), stores()
    batches = 0

    def between_batches(progress: rebuild.Progress) -> None:
        nonlocal batches
        batches += 1
        # Records of a problem whose stored records wait for a later batch.
        write(collector, rng, NOW + 5 * DAY + batches, build="200", functions=("late",))
        if batches == 3:
            raise Stop

    with pytest.raises(Stop):
        rebuild.reprocess(tool, batch=40, progress=between_batches)
    with tool.reading() as session:
        stopped = rebuild.under_way(session)
    assert stopped is not None and stopped.done < stopped.mark
    write(collector, rng, NOW + 6 * DAY, build="201")

    read, problems = rebuild.reprocess(tool, batch=40)
    assert read == 300 - 3 * 40  # carried on where it stopped
    counts = stored_counts(tool)
    assert counts == record_counts(tool)
    late = [b for s, b in counts["first_build"].items() if s.startswith("crash:SIGSEGV:late@")]
    assert late == ["102"]
    assert problems == len(record_counts(tool)["problems"])
    with tool.reading() as session:
        assert rebuild.under_way(session) is None


def test_a_reprocess_while_a_collector_stores_counts_exactly(
    stores: Callable[[], Store],
) -> None:
    rng = random.Random(9)
    first = stores()
    for i in range(20):
        write(first, rng, NOW + i * DAY / 5, build=str(300 + i // 7))
    skip(first, "fail_3")
    collector, tool = stores(), stores()
    done = threading.Event()
    written = 0

    def keep_writing() -> None:
        nonlocal written
        writer_rng = random.Random(10)
        while not done.is_set() or written < 5:
            write(collector, writer_rng, NOW + 4 * DAY + written, build="399", n=7)
            written += 1

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        rebuild.reprocess(tool, batch=25)
    finally:
        done.set()
        thread.join()
    assert written >= 5
    assert stored_counts(tool) == record_counts(tool)


def test_two_reprocesses_at_once_share_the_batches(stores: Callable[[], Store]) -> None:
    rng = random.Random(3)
    first = stores()
    for i in range(10):
        write(first, rng, NOW + i * 3600, build="500")
    skip(first, "fail_4")
    one, two = stores(), stores()
    reads: list[int] = []

    def also_run(progress: rebuild.Progress) -> None:
        if not reads:
            reads.append(rebuild.reprocess(two, batch=30)[0])

    reads.append(rebuild.reprocess(one, batch=30, progress=also_run)[0])
    assert sum(reads) == 200
    assert stored_counts(one) == record_counts(one)
