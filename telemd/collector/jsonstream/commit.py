"""Group commit for the event streams: many batches, of many streams, one transaction.

Each stream (a chunked POST, a WebSocket) hands its converted events to its
`Stream`; the events wait there, merged, while the writer commits the group
before. The collector's one `StreamCommitter` then takes every stream's
waiting events together into the next transaction: one fsync and one
full-text segment for all of them. Events handed to an idle committer go at
once, so a trickle never waits for a timer; under load the transactions
grow by themselves, up to MAX_GROUP_EVENTS.

A stream learns its events are stored only once their transaction has
committed (`Stream.flush`); a POST's 200 and a WebSocket's count wait for
it. A stream whose events failed to commit fails all it hands over later,
without trying them: what a stream reports stored is always its first
events, in order, never a prefix with a hole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from telemd.collector.events.model import Event
from telemd.collector.events.store import StreamPart, store_parts
from telemd.collector.store.base import StorageError

if TYPE_CHECKING:
    from telemd.collector.ingest.writer import Writer
    from telemd.collector.store.base import Store

log = logging.getLogger("telemd.collector")
# One transaction takes the waiting events of as many streams as fit in these
# (and at least one stream's). SQLite's memory grows with a transaction's
# bytes, several times over with the full-text index: a 1 GiB stream of
# 64 KiB events must stay within the collector's 100 MiB.
MAX_GROUP_EVENTS = 20_000
MAX_GROUP_BYTES = 2 * 1024 * 1024
# What one stream may have waiting beside the group being committed, whatever
# the others have; more waits.
MAX_WAITING_EVENTS = 10_000
MAX_WAITING_BYTES = 256 * 1024
# Beyond that, a stream of small events may fill the room left in all the
# streams' waiting: a commit costs most an event there, and a lone stream's
# transactions grow from 2,300 slog lines to 9,000 (about 12% less CPU an
# event). Big events stay within their own fill: the collector's memory
# grows with the bytes of a transaction (a 1 GiB stream of 64 KiB events,
# +87 MiB of RSS at 256 KiB, +111 MiB with a 1 MiB room).
ROOM_EVENTS = MAX_WAITING_EVENTS
ROOM_BYTES = 1024 * 1024
SMALL_EVENT_BYTES = 4096


class Stream:
    """One stream on its way to the store: what waits, what is on its way, what is stored."""

    def __init__(
        self, committer: StreamCommitter, protocol: str, remote: str, headers: Mapping[str, str]
    ) -> None:
        self.committer = committer
        self.protocol = protocol
        self.remote = remote
        self.headers = dict(headers)
        self.id: int | None = None  # known once its first events committed
        self.stored = 0  # events committed
        self.error: StorageError | None = None
        self.handed = 0  # events handed over: the seq of the next
        self._waiting: list[Event] = []
        self._waiting_bytes = 0
        self._waiting_done: asyncio.Future[None] | None = None
        self._unsettled: list[asyncio.Future[None]] = []  # oldest first
        self._taken = asyncio.Event()  # the committer took what waited, or failed it

    async def hand(self, events: list[Event], size: int) -> None:
        """Queue events (`size` bytes of payload) for the next group; StorageError if failed.

        Waits while this stream already has its fill waiting, so memory
        stays bounded however fast the client sends.
        """
        while self._waiting and self._over_its_fill(len(events), size):
            self._taken.clear()
            await self._taken.wait()
        if self.error is not None:
            raise self.error
        if self._waiting_done is None:
            self._waiting_done = asyncio.get_running_loop().create_future()
            self._unsettled.append(self._waiting_done)
        self._waiting.extend(events)
        self._waiting_bytes += size
        self.handed += len(events)
        self.committer.ready(self, len(events), size)

    def _over_its_fill(self, events: int, size: int) -> bool:
        if (
            len(self._waiting) + events <= MAX_WAITING_EVENTS
            and self._waiting_bytes + size <= MAX_WAITING_BYTES
        ):
            return False
        committer = self.committer
        return (
            size > events * SMALL_EVENT_BYTES
            or committer.waiting_events + events > ROOM_EVENTS
            or committer.waiting_bytes + size > ROOM_BYTES
        )

    @property
    def waiting_events(self) -> int:
        return len(self._waiting)

    @property
    def waiting_bytes(self) -> int:
        return self._waiting_bytes

    def take(self) -> tuple[StreamPart, asyncio.Future[None]]:
        """What waits, as the part of a group, and the future its commit settles."""
        assert self._waiting_done is not None
        part = StreamPart(
            self.protocol,
            self.remote,
            self.headers,
            self.id,
            self.handed - len(self._waiting),
            self._waiting,
        )
        done = self._waiting_done
        self.committer.taken(len(self._waiting), self._waiting_bytes)
        self._waiting, self._waiting_bytes, self._waiting_done = [], 0, None
        self._taken.set()
        return part, done

    def settle(
        self, done: asyncio.Future[None], part: StreamPart, error: StorageError | None
    ) -> None:
        if error is None:
            self.stored += len(part.events)
        else:
            self.error = self.error or error
        if not done.done():  # its awaiting request may have been cancelled
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
        self._unsettled.remove(done)

    def fail_waiting(self) -> None:
        """After a failure: what still waits will not be tried."""
        if self._waiting_done is not None and self.error is not None:
            part, done = self.take()
            self.settle(done, part, self.error)

    async def flush(self) -> None:
        """Wait until all handed over is committed; StorageError if any of it failed."""
        while self._unsettled:
            await asyncio.shield(self._unsettled[0])
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Let what was handed over finish, whatever became of the request."""
        while self._unsettled:
            await asyncio.gather(asyncio.shield(self._unsettled[0]), return_exceptions=True)


class StreamCommitter:
    """The collector's one path from the streams to the writer thread."""

    def __init__(self, writer: Writer, store: Store, clock: Callable[[], float]) -> None:
        self.writer = writer
        self.store = store
        self.clock = clock
        self._ready: dict[Stream, None] = {}  # streams with events waiting, in order
        self._task: asyncio.Task[None] | None = None
        self.groups = 0  # transactions committed
        self.waiting_events = 0  # of all streams together
        self.waiting_bytes = 0

    def stream(self, protocol: str, remote: str, headers: Mapping[str, str]) -> Stream:
        return Stream(self, protocol, remote, headers)

    def ready(self, stream: Stream, events: int, size: int) -> None:
        """`stream` has `events` more waiting: commit them now, or after the group on its way."""
        self.waiting_events += events
        self.waiting_bytes += size
        self._ready[stream] = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    def taken(self, events: int, size: int) -> None:
        self.waiting_events -= events
        self.waiting_bytes -= size

    async def _drain(self) -> None:
        try:
            while self._ready:
                await self._commit(self._take_group())
        finally:
            self._task = None

    def _take_group(self) -> list[tuple[Stream, StreamPart, asyncio.Future[None]]]:
        group: list[tuple[Stream, StreamPart, asyncio.Future[None]]] = []
        events = size = 0
        for stream in list(self._ready):
            if group and (
                events + stream.waiting_events > MAX_GROUP_EVENTS
                or size + stream.waiting_bytes > MAX_GROUP_BYTES
            ):
                break
            del self._ready[stream]
            events += stream.waiting_events
            size += stream.waiting_bytes
            group.append((stream, *stream.take()))
        return group

    async def _commit(self, group: list[tuple[Stream, StreamPart, asyncio.Future[None]]]) -> None:
        parts = [part for _, part, _ in group]
        try:
            ids = await self.writer.call(lambda: store_parts(self.store, parts, self.clock()))
        except Exception as exc:
            if len(group) > 1:
                # One stream's bad batch must not fail the others: retry them one by one.
                log.warning("group of %d streams failed (%s); retrying singly", len(group), exc)
                for one in group:
                    await self._commit([one])
                return
            stream, part, done = group[0]
            error = exc if isinstance(exc, StorageError) else StorageError(str(exc))
            stream.settle(done, part, error)
            stream.fail_waiting()
            self._ready.pop(stream, None)
            return
        self.groups += 1
        for (stream, part, done), stream_id in zip(group, ids, strict=True):
            stream.id = stream_id
            stream.settle(done, part, None)
