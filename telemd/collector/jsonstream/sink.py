"""Where a stream's events go: one stream row, then its events in order.

Shared by the WebSocket and the chunked POST. Values are turned into events
in a worker thread and handed to the collector's group commit
(`commit.StreamCommitter`), so the event loop never waits on JSON or the
database, and the next values are read while the last are committed. A
value that cannot be an event (a NUL in a text, which PostgreSQL refuses)
ends the stream there: the events before it are stored, it and those after
are not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from telemd.collector.events.model import Event, EventError
from telemd.collector.jsonstream.events import to_event

if TYPE_CHECKING:
    from telemd.collector.server.app import Collector


def convert(
    values: list[Any], first_index: int, received_at: float
) -> tuple[list[Event], int, str | None]:
    """The events of `values` up to the first that cannot be one, their payloads' size,
    and why that one cannot."""
    events: list[Event] = []
    size = 0
    for offset, value in enumerate(values):
        try:
            event = to_event(value, index=first_index + offset, received_at=received_at)
        except EventError as exc:
            return events, size, f"value {first_index + offset + 1}: {exc.message}"
        events.append(event)
        size += len(event.payload)
    return events, size, None


class StreamSink:
    """One stream's events into the store; `stored` counts those committed."""

    def __init__(
        self, collector: Collector, protocol: str, remote: str, headers: Mapping[str, str]
    ) -> None:
        self.collector = collector
        self.stream = collector.stream_commits.stream(protocol, remote, headers)

    @property
    def stored(self) -> int:
        return self.stream.stored

    @property
    def taken(self) -> int:
        """Values handed over so far, stored or on their way."""
        return self.stream.handed

    async def add(self, values: list[Any]) -> str | None:
        """Convert `values`, hand them to the group commit; the error of a value that is no event.

        StorageError when an earlier batch of this stream failed to commit.
        """
        c = self.collector
        events, size, error = await anyio.to_thread.run_sync(
            convert, values, self.stream.handed, c.clock()
        )
        if events:
            await self.stream.hand(events, size)
        return error

    async def flush(self) -> None:
        """Wait until every event handed over is committed; StorageError if one failed."""
        await self.stream.flush()

    async def close(self) -> None:
        """Let the events on their way finish, whatever became of the request."""
        await self.stream.close()
