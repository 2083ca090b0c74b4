"""The spool on its own: whichever way a batch commits, every row is stored
whole, and one bad row or job fails alone."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from telemd.daemon.spool import Entry, HostKey, Spool
from telemd.errors import ErrorCode
from telemd.hostinfo import HostInfo

HOST = HostInfo("x86_64", "a|b|c", "41000", "6.1.0", "clear-linux-os", "b", "cpu", "1.0", "boot")


def entry(number: int, host: HostKey) -> Entry:
    return (
        f"{number:032x}",
        1000.0 + number,
        1_700_000_000 + number,
        "org.example/spool/test",
        2,
        1,
        "e" * 32,
        f"payload {number}",
        100 + number,
        host,
        1000,
        4242,
    )


async def submit_all(spool: Spool, batches: list[list[Entry]]) -> list[str | None]:
    """Submit each batch while the writer is idle, so that it commits as one."""
    outcomes: list[str | None] = []
    for batch in batches:
        for item in batch:
            spool.submit(item, outcomes.append)
        await spool.wait_idle()
    return outcomes


def test_small_large_and_new_host_batches_store_every_column(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), max_bytes=None)
    first, second = ("m" * 32, HOST), ("n" * 32, HOST)
    batches = [
        [entry(0, first)],  # a new host: the transaction path
        [entry(n, first) for n in range(1, 6)],  # small, known host: one statement
        [entry(n, first) for n in range(6, 106)],  # above one statement's rows
        [entry(106, first), entry(107, second)],  # a new host mid-batch
        [entry(n, second) for n in range(108, 111)],
    ]

    async def main() -> list[str | None]:
        spool.open(asyncio.get_running_loop(), str(tmp_path / "journal.sqlite"))
        try:
            return await submit_all(spool, batches)
        finally:
            spool.close()

    outcomes = asyncio.run(main())

    assert outcomes == [None] * 111
    expected = [item for batch in batches for item in batch]
    with sqlite3.connect(tmp_path / "spool.sqlite") as conn:
        rows = conn.execute(
            "SELECT r.record_id, r.received_at, r.creation_timestamp, r.classification,"
            " r.severity, r.payload_format_version, r.event_id, r.payload, r.size,"
            " h.machine_id, r.sender_uid, r.sender_pid"
            " FROM records r JOIN hosts h ON h.id = r.host_id ORDER BY r.seq"
        ).fetchall()
    assert rows == [(*item[:9], item[9][0], item[10], item[11]) for item in expected]


# 1 followed by 25 zeros: too large for SQLite's INTEGER, it once killed the writer.
HUGE = 10**25


def bad(entry_: Entry) -> Entry:
    return (*entry_[:2], HUGE, *entry_[3:])  # type: ignore[return-value]


class Outcomes:
    """Each submitter's outcome by name, as the loop hears it."""

    def __init__(self) -> None:
        self.by_name: dict[str, object] = {}

    def entry(self, name: str) -> Callable[[str | None], None]:
        return lambda error: self.by_name.__setitem__(name, error)

    def job(self, name: str) -> Callable[[str | None, object], None]:
        return lambda error, result: self.by_name.__setitem__(name, (error, result))


async def in_one_batch(spool: Spool, submit: Callable[[], None]) -> None:
    """Run `submit` while the writer is held in a job, so that everything it
    queues is taken as one batch; then wait for the writer to finish it."""
    gate = threading.Event()
    spool.run(lambda conn: gate.wait(10), lambda error, result: None)
    submit()
    gate.set()
    await asyncio.wait_for(spool.wait_idle(), 10)


def stored_ids(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "spool.sqlite") as conn:
        return [row[0] for row in conn.execute("SELECT record_id FROM records ORDER BY seq")]


def run_spool(tmp_path: Path, body: Callable[[Spool], Awaitable[None]]) -> Spool:
    spool = Spool(str(tmp_path), max_bytes=None)

    async def main() -> None:
        spool.open(asyncio.get_running_loop(), str(tmp_path / "journal.sqlite"))
        try:
            await body(spool)
        finally:
            spool.close()

    asyncio.run(main())
    return spool


@pytest.mark.parametrize(
    ("rows", "new_host"),
    [(8, False), (100, False), (8, True)],
    ids=["one-statement", "transaction", "new-host"],
)
def test_one_bad_row_is_refused_alone_and_its_neighbours_are_stored(
    tmp_path: Path, rows: int, new_host: bool, caplog: pytest.LogCaptureFixture
) -> None:
    known, fresh = ("m" * 32, HOST), ("n" * 32, HOST)
    good = [entry(n, fresh if new_host and n == 0 else known) for n in range(1, rows + 1)]
    poisoned = bad(entry(0, known))
    outcomes = Outcomes()

    async def body(spool: Spool) -> None:
        await submit_all(spool, [[entry(rows + 1, known)]])  # the host is known now

        def submit() -> None:
            for item in good[: rows // 2]:
                spool.submit(item, outcomes.entry(item[0]))
            spool.submit(poisoned, outcomes.entry("poisoned"))
            for item in good[rows // 2 :]:
                spool.submit(item, outcomes.entry(item[0]))

        await in_one_batch(spool, submit)
        # The writer goes on: the next record is stored.
        await submit_all(spool, [[entry(rows + 2, known)]])

    with caplog.at_level(logging.WARNING, logger="telemd.spool"):
        spool = run_spool(tmp_path, body)

    assert outcomes.by_name.pop("poisoned") == ErrorCode.INTERNAL
    assert outcomes.by_name == {item[0]: None for item in good}
    assert stored_ids(tmp_path) == [
        entry(rows + 1, known)[0],
        *[item[0] for item in good],
        entry(rows + 2, known)[0],
    ]
    assert spool.depth == rows + 2
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "too large" in str(tracebacks[0].exc_info[1])  # type: ignore[index]


def test_a_job_with_a_defect_fails_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    outcomes = Outcomes()

    def defect(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM records")
        raise ZeroDivisionError("a defect")

    async def body(spool: Spool) -> None:
        def submit() -> None:
            spool.submit(entry(1, ("m" * 32, HOST)), outcomes.entry("first"))
            spool.run(defect, outcomes.job("defect"))
            spool.run(lambda conn: 42, outcomes.job("answer"))
            spool.submit(entry(2, ("m" * 32, HOST)), outcomes.entry("second"))

        await in_one_batch(spool, submit)
        await submit_all(spool, [[entry(3, ("m" * 32, HOST))]])

    spool = run_spool(tmp_path, body)

    assert outcomes.by_name == {
        "first": None,
        "defect": (ErrorCode.INTERNAL, None),
        "answer": (None, 42),
        "second": None,
    }
    # The defect's DELETE was rolled back with it.
    assert stored_ids(tmp_path) == [entry(n, ("m" * 32, HOST))[0] for n in (1, 2, 3)]
    assert spool.writer_state == "stopped"


def test_a_full_batch_is_not_retried_row_by_row(tmp_path: Path) -> None:
    calls = []

    def full(conn: sqlite3.Connection) -> None:
        calls.append(1)
        raise sqlite3.OperationalError("database or disk is full")

    outcomes = Outcomes()

    async def body(spool: Spool) -> None:
        def submit() -> None:
            spool.submit(entry(1, ("m" * 32, HOST)), outcomes.entry("record"))
            spool.run(full, outcomes.job("full"))

        await in_one_batch(spool, submit)

    run_spool(tmp_path, body)
    assert outcomes.by_name == {
        "record": ErrorCode.SPOOL_FULL,
        "full": (ErrorCode.SPOOL_FULL, None),
    }
    assert calls == [1]


def test_if_the_writer_ends_everything_queued_and_later_fails_and_the_daemon_hears(
    tmp_path: Path,
) -> None:
    outcomes = Outcomes()
    heard: list[str] = []

    def end_the_thread(conn: sqlite3.Connection) -> None:
        raise SystemExit("gone")

    async def body(spool: Spool) -> None:
        gone = asyncio.Event()
        spool.on_writer_gone = gone.set

        def submit() -> None:
            spool.submit(entry(1, ("m" * 32, HOST)), outcomes.entry("before"))
            spool.run(end_the_thread, outcomes.job("end"))
            spool.submit(entry(2, ("m" * 32, HOST)), outcomes.entry("after"))

        await in_one_batch(spool, submit)
        await asyncio.wait_for(gone.wait(), 10)
        heard.append(spool.writer_state)
        spool.submit(entry(3, ("m" * 32, HOST)), outcomes.entry("later"))
        await asyncio.wait_for(spool.wait_idle(), 10)

    run_spool(tmp_path, body)
    assert heard == ["failed: SystemExit: gone"]
    assert outcomes.by_name == {
        "before": ErrorCode.INTERNAL,
        "end": (ErrorCode.INTERNAL, None),
        "after": ErrorCode.INTERNAL,
        "later": ErrorCode.INTERNAL,
    }


def test_a_callback_with_a_defect_leaves_no_other_submitter_unanswered(tmp_path: Path) -> None:
    outcomes = Outcomes()

    def broken(error: str | None) -> None:
        raise RuntimeError("a defect in a callback")

    async def body(spool: Spool) -> None:
        def submit() -> None:
            spool.submit(entry(1, ("m" * 32, HOST)), broken)
            spool.submit(entry(2, ("m" * 32, HOST)), outcomes.entry("second"))

        await in_one_batch(spool, submit)  # returns: the writer went idle

    spool = run_spool(tmp_path, body)
    assert outcomes.by_name == {"second": None}
    assert spool.depth == 2
