"""uvicorn's wsproto WebSocket protocol, with what the Go client's count needs.

- A ping is a message the count includes, so each ping the client sends is
  also handed to the app, as an ASGI message of type PING, after uvicorn has
  answered it with a pong.
- permessage-deflate lets a few KiB inflate to a GiB inside one read; the
  bytes read are fed to wsproto in slices of FEED_SLICE, so that uvicorn's
  `ws_max_size` check runs after each slice's inflated data, never after a
  whole read's.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

from telemd.collector.jsonstream.burst import PING

# deflate inflates at most about 1,032 times: a slice inflates to 16.5 MiB at most.
FEED_SLICE = 16 * 1024


class CountingWSProtocol(WSProtocol):
    def data_received(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(view), FEED_SLICE):
            if self.transport.is_closing():
                return
            super().data_received(bytes(view[start : start + FEED_SLICE]))

    def handle_ping(self, event: Any) -> None:
        super().handle_ping(event)
        if self.handshake_complete and not self.close_sent:
            self.queue.put_nowait({"type": PING})  # type: ignore[typeddict-item]
