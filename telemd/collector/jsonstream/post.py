"""`POST /` with `Content-Type: application/jsonl`: the Go client's streamed body.

The body is concatenated JSON values, chunked, as long as the client likes;
it is split and stored as it arrives and never held whole. The answer is the
project's own: the number of events stored, as plain text, with 200 at the
end of the body, 400 when a value is not JSON or is cut off (the events
before it stay stored), 413 when one value is larger than MAX_VALUE, 503
when the database fails. The reason of a refusal is in `X-Telemetry-Error`
and the log, since the body must stay a bare count for the client.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from telemd.collector.events.model import stored_headers
from telemd.collector.jsonstream.sink import StreamSink
from telemd.collector.jsonstream.splitter import JsonSplitter, Split
from telemd.collector.server.connections import STREAM_BODY
from telemd.collector.store.base import StorageError

if TYPE_CHECKING:
    from telemd.collector.server.app import Collector

log = logging.getLogger("telemd.collector")
STREAM_TYPES = ("application/jsonl",)
PROTOCOL = "telemetry-post"
ERROR_HEADER = "X-Telemetry-Error"
# What is read and thrown away after a refusal, so that a client still
# sending gets the answer rather than a reset connection.
DRAIN_LIMIT = 8 * 1024 * 1024


def count_answer(count: int, status: int = 200, error: str | None = None) -> Response:
    headers = {ERROR_HEADER: error.encode("ascii", "replace").decode()[:500]} if error else None
    return PlainTextResponse(str(count), status_code=status, headers=headers)


async def post_stream(request: Request) -> Response:
    collector: Collector = request.app.state.collector
    stream_body = request.scope.get("extensions", {}).get(STREAM_BODY)
    if stream_body is not None:
        stream_body()
    remote = request.client.host if request.client else "unknown"
    headers = stored_headers(
        request.headers, request.url.path, request.url.query, request.path_params.get("token")
    )
    sink = StreamSink(collector, PROTOCOL, remote, headers)
    splitter = JsonSplitter()
    body = Body(request)
    try:
        status, error = await _read(body, splitter, sink)
    except ClientDisconnect:
        await sink.close()
        log.warning(
            "POST / stream from %s cut off after %d events (%d stored)",
            remote,
            splitter.count,
            sink.stored,
        )
        return count_answer(sink.stored, 400, "the connection closed before the body ended")
    except StorageError as exc:
        await sink.close()
        collector.metrics.count_storage_error()
        log.warning("POST / stream from %s: storage failed: %s", remote, exc.message)
        return count_answer(sink.stored, 503, f"storage unavailable: {exc.message}")
    if error is not None:
        log.warning("POST / stream from %s refused after %d events: %s", remote, sink.stored, error)
        await body.drain()
    return count_answer(sink.stored, status, error)


Outcome = tuple[int, str | None]  # the status and the reason of a refusal


class Body:
    """The request body, chunk by chunk, knowing whether it has ended."""

    def __init__(self, request: Request) -> None:
        self.receive = request.receive
        self.ended = False

    async def chunk(self) -> bytes:
        """The next chunk; b"" at the end. ClientDisconnect when the client is gone."""
        while not self.ended:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            self.ended = not message.get("more_body", False)
            data: bytes = message.get("body", b"")
            if data:
                return data
        return b""

    async def drain(self) -> None:
        """Read what the client still sends, up to DRAIN_LIMIT."""
        drained = 0
        with contextlib.suppress(ClientDisconnect):
            while drained <= DRAIN_LIMIT and not self.ended:
                drained += len(await self.chunk())


async def _read(body: Body, splitter: JsonSplitter, sink: StreamSink) -> Outcome:
    """Split and store the body: (status, error)."""
    while chunk := await body.chunk():
        answer = await _take(await anyio.to_thread.run_sync(splitter.feed, chunk), sink)
        if answer is not None:
            return answer
    answer = await _take(splitter.end(), sink)
    await sink.flush()
    return answer or (200, None)


async def _take(split: Split, sink: StreamSink) -> Outcome | None:
    error = await sink.add(split.values) if split.values else None
    error = error or split.error
    if error is None:
        return None
    await sink.flush()
    return (413 if split.too_large else 400), error
