"""Ask the running daemon over its control socket (see telemd/daemon/control.py)."""

from __future__ import annotations

import json
import socket
from typing import Any

from telemd.errors import DaemonUnavailable, TelemetryError

_TIMEOUT = 15.0


def request(path: str, command: str) -> dict[str, Any]:
    """Send one command; return the daemon's answer, or raise with its error."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(_TIMEOUT)
        try:
            sock.connect(path)
        except OSError as exc:
            raise DaemonUnavailable(
                f"telemd is not running (no control socket at {path}: {exc.strerror})"
            ) from None
        try:
            sock.sendall(json.dumps({"command": command}).encode() + b"\n")
            answer = sock.makefile("rb").readline()
        except OSError as exc:
            raise DaemonUnavailable(f"lost the control connection to telemd: {exc}") from None
    try:
        reply: dict[str, Any] = json.loads(answer)
    except ValueError:
        raise TelemetryError("telemd's control socket gave no answer") from None
    if not reply.get("ok"):
        raise TelemetryError(str(reply.get("error", "the daemon refused")))
    return reply
