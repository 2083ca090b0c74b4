"""The spool on its own: whichever way a batch commits, every row is stored whole."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from telemd.daemon.spool import Entry, HostKey, Spool
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
