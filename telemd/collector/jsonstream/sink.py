"""Where a stream's events go: one stream row, then its events in order.

Shared by the WebSocket and the chunked POST. Values are turned into events
in a worker thread and stored by the writer thread, so the event loop never
waits on JSON or the database. A value that cannot be an event (a NUL in a
text, which PostgreSQL refuses) ends the stream there: the events before it
are stored, it and those after are not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from telemd.collector.events.model import Event, EventError
from telemd.collector.events.store import store_events, store_stream
from telemd.collector.jsonstream.events import to_event

if TYPE_CHECKING:
    from telemd.collector.server.app import Collector


def convert(
    values: list[Any], first_index: int, received_at: float
) -> tuple[list[Event], str | None]:
    """The events of `values` up to the first that cannot be one, and why it cannot."""
    events = []
    for offset, value in enumerate(values):
        try:
            events.append(to_event(value, index=first_index + offset, received_at=received_at))
        except EventError as exc:
            return events, f"value {first_index + offset + 1}: {exc.message}"
    return events, None


class StreamSink:
    """One stream's events into the store; `stored` counts those committed."""

    def __init__(
        self, collector: Collector, protocol: str, remote: str, headers: Mapping[str, str]
    ) -> None:
        self.collector = collector
        self.protocol = protocol
        self.remote = remote
        self.headers = dict(headers)
        self.stored = 0
        self.taken = 0  # values handed over so far, stored or on their way
        self._stream_id: int | None = None
        self._pending: asyncio.Task[None] | None = None

    async def add(self, values: list[Any]) -> str | None:
        """Convert `values` and start storing them; the error of a value that is no event.

        The previous batch is awaited first, so at most one batch waits for
        the writer while the next is read: memory stays bounded.
        """
        c = self.collector
        events, error = await anyio.to_thread.run_sync(convert, values, self.taken, c.clock())
        self.taken += len(events)
        await self.flush()
        if events:
            self._pending = asyncio.ensure_future(self._store(events))
        return error

    async def flush(self) -> None:
        """Wait for the batch on its way; StorageError if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def _store(self, events: list[Event]) -> None:
        c = self.collector
        if self._stream_id is None:
            self._stream_id = await c.writer.call(
                lambda: store_stream(c.store, self.protocol, self.remote, self.headers, c.clock())
            )
        stream_id, first = self._stream_id, self.stored
        await c.writer.call(lambda: store_events(c.store, stream_id, events, c.clock(), first))
        self.stored += len(events)

    async def close(self) -> None:
        """Let the batch on its way finish, whatever became of the request."""
        if self._pending is not None:
            await asyncio.gather(self._pending, return_exceptions=True)
            self._pending = None
