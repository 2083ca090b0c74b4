"""HTTP pieces every route module shares: JSON answers, refusals, bounded bodies.

Kept apart from the app so that a part's own route module (events, ...) can
use them without importing the app that lists its routes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from telemd.collector import json_codec
from telemd.collector.config import MAX_BODY_SIZE
from telemd.collector.ingest.records import FieldError
from telemd.errors import ErrorCode

DRAIN_LIMIT = 2 * MAX_BODY_SIZE


class JSONResponse(Response):
    """JSON through orjson where installed: a batch answer has a result per record."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json_codec.dumps(content)


class Refused(Exception):
    """Answer the request with `status` and {"message": ..., "field": ...}."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    @classmethod
    def from_field(cls, exc: FieldError) -> Refused:
        return cls(413 if exc.code == ErrorCode.TOO_LARGE else 400, exc.message, exc.field)


async def read_body(request: Request, limit: int = MAX_BODY_SIZE) -> bytes:
    """The body, at most `limit` bytes; beyond, 413.

    An oversized body is still read (up to DRAIN_LIMIT) and thrown away, so
    that the client, which sends its whole body before it reads, gets the
    413 rather than a reset connection.
    """
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise Refused(400, f"Content-Length is not a number: {length[:40]!r}", "content-length")
    too_large = Refused(413, f"body is larger than {limit} bytes", "body")
    if length is not None and int(length) > DRAIN_LIMIT:
        raise too_large
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > DRAIN_LIMIT:
                break
            if size <= limit:
                chunks.append(chunk)
    except ClientDisconnect:  # gone, or closed by the body deadline (connections.py)
        raise Refused(400, "the connection closed before the body ended", "body") from None
    if size > limit:
        raise too_large
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()
