"""Who is connected: SO_PEERCRED, and the table of connections per uid.

The table holds the two connection limits: `per_uid` connections of one
uid, `limit` in all. At either, it names a connection that may be shed for
a newcomer (`own_idle`, `to_shed`); intake (telemd/daemon/intake.py) does
the I/O and decides what a newcomer without room waits for.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

# A connection this long without a complete frame may be shed at the limit;
# a younger one may still hold frames unread in its socket.
SHED_AFTER_IDLE = 0.25
# How many of the heaviest uid's connections are looked at for one to shed.
SHED_SCAN = 32


def peer_credentials(sock: Any) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer process; raises OSError if the kernel will not say."""
    pid, uid, gid = _UCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return pid, uid, gid


def descriptor_room(reserve: int) -> int | None:
    """How many more descriptors this process may open, keeping `reserve` of
    them for everything but client connections; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(soft - len(os.listdir("/proc/self/fd")) - reserve, 1)


class Peer(Protocol):
    uid: int
    active_at: float

    def owes_replies(self) -> bool:
        """Frames of it are being stored: closing it would hide their fate."""

    def busy(self) -> bool:
        """Owes replies or holds frames not yet read."""


P = TypeVar("P", bound=Peer)


class PeerTable(Generic[P]):
    """Connections per uid, least recently active first (dicts keep order)."""

    def __init__(self, limit: int, per_uid: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.per_uid = per_uid
        self.clock = clock
        self.count = 0
        self._by_uid: dict[int, dict[P, None]] = {}

    def __iter__(self) -> Any:
        return iter([peer for peers in self._by_uid.values() for peer in peers])

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def add(self, peer: P) -> None:
        self._by_uid.setdefault(peer.uid, {})[peer] = None
        self.count += 1

    def remove(self, peer: P) -> None:
        peers = self._by_uid.get(peer.uid)
        if peers is None or peer not in peers:
            return
        del peers[peer]
        self.count -= 1
        if not peers:
            del self._by_uid[peer.uid]

    def touch(self, peer: P) -> None:
        """Mark `peer` as the most recently active of its uid."""
        peers = self._by_uid.get(peer.uid)
        if peers is not None and peer in peers:
            del peers[peer]
            peers[peer] = None

    def uid_count(self, uid: int) -> int:
        return len(self._by_uid.get(uid, ()))

    def own_idle(self, uid: int) -> P | None:
        """The least recently active connection of `uid` that has been idle
        SHED_AFTER_IDLE with nothing unread or owed: it gives way to a newcomer
        of its own uid at per_uid."""
        now = self.clock()
        for n, peer in enumerate(self._by_uid.get(uid, ())):
            if n >= SHED_SCAN or now - peer.active_at < SHED_AFTER_IDLE:
                return None  # later ones were active more recently still
            if not peer.busy():
                return peer
        return None

    def to_shed(self, newcomer: int) -> P | None:
        """The connection to close so that one of uid `newcomer` may open, or None.

        It is the least recently active connection of the uid holding the
        most that is owed no reply. When that uid is the newcomer's own, or
        holds no more than it, the connection must also be idle: nothing
        buffered, and nothing sent for SHED_AFTER_IDLE (a younger one may hold
        frames still unread in its socket). A uid holding more than the
        newcomer's gives way whatever it has sent but not yet had read: its
        client sees the connection reset, with nothing acknowledged.
        """
        if not self._by_uid:
            return None
        heaviest = max(self._by_uid.values(), key=len)
        lighter = len(self._by_uid.get(newcomer, ())) + 1 < len(heaviest)
        now = self.clock()
        for n, peer in enumerate(heaviest):
            if n >= SHED_SCAN:
                return None
            if lighter:
                if not peer.owes_replies():
                    return peer
            elif now - peer.active_at < SHED_AFTER_IDLE:
                return None  # later ones were active more recently still
            elif not peer.busy():
                return peer
        return None
