"""The HTTPS sink of bench/delivery: answers every POST 201, ndjson per record.

usage: https_sink.py PORT CERTFILE KEYFILE

A bare asyncio HTTP/1.1 keep-alive server over TLS, so that the sink costs
as little as possible and the senders measured are what limits the rate. It
runs in its own process. Not a general HTTP server: it reads Content-Length
bodies and nothing else, which is all telemd and httpx send it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys

_NDJSON = b"content-type: application/x-ndjson"


def answer(head: bytes, body: bytes) -> bytes:
    if _NDJSON in head.lower():
        results = [
            {"record_id": json.loads(line)["record_id"], "status": "stored"}
            for line in body.splitlines()
        ]
        payload = json.dumps({"results": results}).encode()
    else:
        payload = b'{"status": "stored"}'
    return (
        b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
    )


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            writer.write(answer(head, body))
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main(port: int, certfile: str, keyfile: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=context, limit=8 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
