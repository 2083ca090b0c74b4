"""Group commit of the event streams (jsonstream/commit.py) on a real store and writer
thread, SQLite and PostgreSQL: what waits goes together, and nothing is acknowledged
before its transaction commits."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest

from telemd.collector.events.model import Event
from telemd.collector.ingest.writer import Writer
from telemd.collector.jsonstream.commit import (
    MAX_WAITING_BYTES,
    ROOM_BYTES,
    SMALL_EVENT_BYTES,
    Stream,
    StreamCommitter,
)
from telemd.collector.jsonstream.events import to_event
from telemd.collector.store.base import StorageError, Store

NOW = 1_800_000_000.0
T = TypeVar("T")


def events(tag: str, n: int) -> list[Event]:
    return [to_event({"msg": tag, "n": i}, index=i, received_at=NOW) for i in range(n)]


def stored(store: Store) -> list[tuple[str, int, int]]:
    """(msg, seq, stream id) of every stored event, in id order."""
    with store.reading() as session:
        rows = session.fetch("SELECT event, seq, stream_id FROM events ORDER BY id")
    return [(name, seq, stream) for name, seq, stream in rows]


@pytest.fixture
def writer(store: Store) -> Iterator[Writer]:
    started = Writer(store, lambda: NOW)
    started.start()
    yield started
    started.stop()


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def held(writer: Writer) -> tuple[threading.Event, asyncio.Future[object]]:
    """Keep the writer thread busy until the returned gate is set."""
    gate = threading.Event()
    busy = threading.Event()

    def hold() -> None:
        busy.set()
        gate.wait(30)

    job = asyncio.ensure_future(writer.call(hold))
    await asyncio.to_thread(busy.wait, 30)
    return gate, job


def test_streams_waiting_together_are_one_transaction_acknowledged_after_its_commit(
    store: Store, writer: Writer
) -> None:
    committer = StreamCommitter(writer, store, lambda: NOW)

    async def scenario() -> None:
        gate, job = await held(writer)
        a = committer.stream("telemetry-post", "192.0.2.1", {})
        b = committer.stream("telemetry-websocket", "192.0.2.2", {})
        await a.hand(events("a1", 3), 100)
        await asyncio.sleep(0)  # the committer takes a1 and waits for the writer
        await a.hand(events("a2", 2), 100)
        await b.hand(events("b1", 4), 100)
        flushes = [asyncio.ensure_future(s.flush()) for s in (a, b)]
        await asyncio.sleep(0)
        assert not any(f.done() for f in flushes)
        assert stored(store) == [] and (a.stored, b.stored) == (0, 0)
        gate.set()
        await job
        await asyncio.gather(*flushes)
        assert (a.stored, b.stored) == (5, 4)
        # a1 alone, then a2 and b1, which waited together, in one transaction.
        assert committer.groups == 2

    run(scenario)
    rows = stored(store)
    assert [(name, seq) for name, seq, _ in rows] == [
        *[("a1", i) for i in range(3)],
        *[("a2", 3 + i) for i in range(2)],
        *[("b1", i) for i in range(4)],
    ]
    assert len({stream for *_, stream in rows[:5]}) == 1
    assert rows[0][2] != rows[-1][2]


def test_a_trickle_is_committed_at_once(store: Store, writer: Writer) -> None:
    committer = StreamCommitter(writer, store, lambda: NOW)

    async def scenario() -> None:
        stream = committer.stream("telemetry-post", "192.0.2.1", {})
        for i in range(3):
            await stream.hand(events(f"t{i}", 1), 10)
            await stream.flush()  # returns with no more events coming: nothing waits for more
            assert stream.stored == i + 1
            assert len(stored(store)) == i + 1

    run(scenario)
    assert committer.groups == 3


async def hands_at_once(stream: Stream, tag: str, n: int, size: int) -> asyncio.Future[None]:
    """Hand `n` events of `size` bytes in all; the future is done unless `hand` had to wait."""
    handing = asyncio.ensure_future(stream.hand(events(tag, n), size))
    await asyncio.sleep(0)  # runs `hand` up to its first wait, if any
    return handing


def test_a_lone_stream_of_small_events_fills_the_room_then_waits(
    store: Store, writer: Writer
) -> None:
    """A stream of small events commits more of them a transaction, while the
    memory of all the streams waiting together stays within ROOM_BYTES."""
    committer = StreamCommitter(writer, store, lambda: NOW)
    n, size = 1000, 200_000  # 200 bytes an event: small; a batch is past a stream's own fill
    room = ROOM_BYTES // size

    async def scenario() -> tuple[Stream, Stream]:
        gate, job = await held(writer)
        lone = committer.stream("telemetry-post", "192.0.2.1", {})
        await lone.hand(events("first", 1), 10)
        await asyncio.sleep(0)  # the committer takes it and waits for the writer
        for i in range(room):
            assert (await hands_at_once(lone, f"fill{i}", n, size)).done(), i
        over = await hands_at_once(lone, "over", n, size)
        assert not over.done()
        # Another stream still hands its own fill, and then waits too.
        other = committer.stream("telemetry-post", "192.0.2.2", {})
        assert (await hands_at_once(other, "other", n, size)).done()
        other_over = await hands_at_once(other, "other-over", n, size)
        assert not other_over.done()
        gate.set()
        await asyncio.gather(job, over, other_over)
        await lone.flush()
        await other.flush()
        return lone, other

    lone, other = run(scenario)
    assert (lone.stored, other.stored) == (1 + (room + 1) * n, 2 * n)
    assert len(stored(store)) == 1 + (room + 3) * n


def test_big_events_keep_to_their_streams_own_fill(store: Store, writer: Writer) -> None:
    committer = StreamCommitter(writer, store, lambda: NOW)
    big = SMALL_EVENT_BYTES + 1

    async def scenario() -> Stream:
        gate, job = await held(writer)
        lone = committer.stream("telemetry-post", "192.0.2.1", {})
        await lone.hand(events("first", 1), 10)
        await asyncio.sleep(0)  # the committer takes it and waits for the writer
        handed = 0
        while True:  # room enough for more, but not for events this big
            handing = await hands_at_once(lone, f"big{handed}", 1, big)
            if not handing.done():
                break
            handed += 1
        assert handed == MAX_WAITING_BYTES // big
        gate.set()
        await asyncio.gather(job, handing)
        await lone.flush()
        return lone

    lone = run(scenario)
    assert lone.stored == 1 + MAX_WAITING_BYTES // big + 1


def test_a_failed_stream_keeps_its_neighbours_and_tries_nothing_after_the_failure(
    store: Store, writer: Writer
) -> None:
    committer = StreamCommitter(writer, store, lambda: NOW)
    # A source of NULL breaks the table's NOT NULL: a real error of the database.
    broken = [dataclasses.replace(event, source=None) for event in events("bad", 1)]  # type: ignore[arg-type]

    async def scenario() -> tuple[Stream, Stream]:
        gate, job = await held(writer)
        good = committer.stream("telemetry-post", "192.0.2.1", {})
        bad = committer.stream("telemetry-post", "192.0.2.2", {})
        await good.hand(events("good", 2), 100)
        await bad.hand(events("before", 1) + broken, 100)
        await asyncio.sleep(0)  # both are taken as one group
        await bad.hand(events("after", 2), 100)  # waits behind the failing group
        gate.set()
        await job
        await good.flush()
        with pytest.raises(StorageError):
            await bad.flush()
        with pytest.raises(StorageError):
            await bad.hand(events("later", 1), 10)
        return good, bad

    good, bad = run(scenario)
    assert [name for name, _, _ in stored(store)] == ["good", "good"]
    assert (good.stored, bad.stored) == (2, 0)
