"""Who is at the other end of a Unix socket: SO_PEERCRED, read in one place."""

from __future__ import annotations

import socket
import struct
from typing import Any

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_credentials(sock: Any) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer process; raises OSError if the kernel will not say."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return pid, uid, gid
