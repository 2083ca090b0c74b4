"""The control socket: what `telemctl` asks of the running daemon.

One JSON object per line each way: `{"command": "status"}` is answered
`{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Anyone who can reach
the socket may read `status`; commands that change state (`flush`, `purge`)
need the peer (SO_PEERCRED) to be root, the daemon's own user, or in its
group. Like intake, nothing a client sends can raise out of here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from telemd.daemon.peers import peer_credentials

log = logging.getLogger("telemd.control")

Handler = Callable[[], Awaitable[dict[str, Any]]]
PRIVILEGED = frozenset({"flush", "purge"})
_MAX_REQUEST = 4096
_TIMEOUT = 10.0


def may_change_state(uid: int, gid: int) -> bool:
    return uid == 0 or uid == os.geteuid() or gid == os.getegid()


class ControlServer:
    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self._server: asyncio.AbstractServer | None = None

    async def start(self, listener: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(
            self._serve, sock=listener, limit=_MAX_REQUEST
        )

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), _TIMEOUT)
            answer = await self._answer(line, writer.get_extra_info("socket"))
            writer.write(json.dumps(answer).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), _TIMEOUT)
        except (OSError, asyncio.TimeoutError, ValueError):
            pass  # the client went away or sent too much; nothing to answer
        finally:
            writer.close()

    async def _answer(self, line: bytes, sock: Any) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = request["command"]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'expected one line {"command": NAME}'}
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        if command in PRIVILEGED:
            try:
                _pid, uid, gid = peer_credentials(sock)
            except OSError:
                uid = gid = -1
            if not may_change_state(uid, gid):
                return {"ok": False, "error": f"{command} needs root or the telemetry user"}
        try:
            return {"ok": True, **await handler()}
        except Exception:  # a defect must cost one request, never the daemon
            log.exception("control command %s failed", command)
            return {"ok": False, "error": f"{command} failed; see the daemon log"}
