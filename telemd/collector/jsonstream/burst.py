"""The WebSocket's count: what one burst of messages holds and how it is counted.

The Go client's server reads messages while they keep coming, stores them,
then sends the number of messages handled on the stream so far as a text
message. Every message handled counts: events, the empty binary message
that ends the stream, a close frame and a ping (two events and the
terminator answer "3"). A message that is not a JSON event ends the stream:
the events before it are stored and counted, it is not.

Pure code: no I/O. Messages are ASGI messages; a ping arrives as PING
(telemd.collector.jsonstream.wsprotocol).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from telemd.collector import json_codec

PING = "telemd.websocket.ping"


@dataclass(slots=True)
class Burst:
    values: list[Any] = field(default_factory=list)  # the events, parsed, in order
    handled: int = 0  # messages counted
    ends: bool = False  # the terminator or a close came: read no more
    closed: bool = False  # the client is gone: nothing can be sent back
    error: str | None = None  # why the stream must end with 1007 (invalid data)


def read_burst(messages: Iterable[Mapping[str, Any]], first_index: int) -> Burst:
    """Count and parse one burst; the event numbers in errors start after `first_index`."""
    burst = Burst()
    for message in messages:
        kind = message["type"]
        if kind == PING:
            burst.handled += 1
            continue
        if kind == "websocket.disconnect":
            # A close frame is a message handled; a dropped connection is not.
            if message.get("code") not in (1005, 1006):
                burst.handled += 1
            burst.ends = burst.closed = True
            return burst
        data = message.get("bytes")
        if data is None:
            data = message.get("text")
        elif not data:
            burst.handled += 1  # the empty binary message: the end of the stream
            burst.ends = True
            return burst
        number = first_index + len(burst.values) + 1
        try:
            burst.values.append(json_codec.loads(data or ""))
        except ValueError as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            burst.error = f"message {number} is not valid JSON: {reason}"
            burst.ends = True
            return burst
        burst.handled += 1
    return burst
