"""Baseline for bench/events: the Go client's two transports, parsed and thrown away.

The same uvicorn, h11 and wsproto protocols as telemd-collector, the same
splitter and burst counting (telemd.collector.jsonstream), but nothing
stored: `POST /` (application/jsonl) answers the count of values read, the
WebSocket on `/` the cumulative count after each burst.

usage: bare_events_server.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.types import Receive, Scope, Send

from telemd.collector.jsonstream.burst import read_burst
from telemd.collector.jsonstream.splitter import MAX_VALUE, JsonSplitter
from telemd.collector.jsonstream.websocket import Inbox
from telemd.collector.jsonstream.wsprotocol import CountingWSProtocol


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        splitter = JsonSplitter()
        while True:
            message = await receive()
            splitter.feed(message.get("body", b""))
            if not message.get("more_body"):
                break
        splitter.end()
        body = str(splitter.count).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        inbox = Inbox(receive)
        count = 0
        while True:
            burst = read_burst(await inbox.take(), count)
            count += burst.handled
            if burst.closed:
                break
            await send({"type": "websocket.send", "text": str(count)})
            if burst.ends:
                await send({"type": "websocket.close", "code": 1000})
                break
        inbox.close()


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        http="h11",
        ws=CountingWSProtocol,
        ws_max_size=MAX_VALUE,
        log_level="warning",
        lifespan="on",
    )
