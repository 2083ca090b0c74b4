"""Baseline for bench/intake: a bare asyncio Unix server speaking telemd's framing.

It reads each length-prefixed frame and answers `OK <32 hex>` at once, storing
nothing: what an asyncio server costs before any validation or durability.
Writes "done" on stdout each time it has answered the number of frames last
written to its stdin.

usage: bare_server.py SOCKET [asyncio|uvloop]   (the event loop; asyncio's own by default)
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import ClassVar, cast

from telemd.daemon import eventloop


class Echo(asyncio.Protocol):
    counter: ClassVar[dict[str, int]] = {"seen": 0, "target": -1}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        replies = []
        offset = 0
        while len(buffer) - offset >= 4:
            size = int.from_bytes(buffer[offset : offset + 4], "little")
            if len(buffer) - offset < size:
                break
            offset += size
            replies.append(b"OK " + os.urandom(16).hex().encode() + b"\n")
        del buffer[:offset]
        if replies and not self.transport.is_closing():
            self.transport.write(b"".join(replies))
        counter = self.counter
        counter["seen"] += len(replies)
        if counter["seen"] == counter["target"]:
            sys.stdout.write("done\n")
            sys.stdout.flush()

    def eof_received(self) -> bool:
        return False


async def main(path: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(Echo, path=path, backlog=1024)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while line := await reader.readline():
        Echo.counter["seen"] = 0
        Echo.counter["target"] = int(line)
    server.close()


if __name__ == "__main__":
    eventloop.run(main(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "asyncio")
