"""Who is connected: SO_PEERCRED, and the table of connections per uid.

The table enforces the two connection limits. At most `per_uid` connections
of one uid are served at once; its further connections are parked: open,
but what they send is read only once a serving slot of the uid is free
(one of its served connections closes, or gives way after idling). A burst
of libtelemetry connections (connect, write, close) thus loses nothing,
and a uid's idle crowd does not keep its next client waiting. At most
`limit` connections are open in all; past it the least recently active idle
connection of the uid holding the most is shed, or the new one refused (see
`to_shed`). The table decides; intake (telemd/daemon/intake.py) does the I/O.
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
        self._parked: dict[int, dict[P, None]] = {}
        self._finished: dict[int, dict[P, None]] = {}  # served, nothing more to read

    def __iter__(self) -> Any:
        return iter([peer for peers in self._by_uid.values() for peer in peers])

    @property
    def full(self) -> bool:
        return self.count >= self.limit

    def add(self, peer: P) -> bool:
        """Count `peer` in; False when it is parked (its uid is at per_uid)."""
        room = self.has_room(peer.uid)
        self._by_uid.setdefault(peer.uid, {})[peer] = None
        self.count += 1
        if not room:
            self._parked.setdefault(peer.uid, {})[peer] = None
        return room

    def remove(self, peer: P) -> None:
        peers = self._by_uid.get(peer.uid)
        if peers is None or peer not in peers:
            return
        del peers[peer]
        self.count -= 1
        if not peers:
            del self._by_uid[peer.uid]
        for table in (self._parked, self._finished):
            others = table.get(peer.uid)
            if others is not None and peer in others:
                del others[peer]
                if not others:
                    del table[peer.uid]

    def promote(self, peer: P) -> None:
        """A parked `peer` takes a serving slot of its uid."""
        parked = self._parked[peer.uid]
        del parked[peer]
        if not parked:
            del self._parked[peer.uid]

    def finish(self, peer: P) -> bool:
        """A served `peer` will send nothing more: its slot is free. Whether it was served."""
        peers = self._by_uid.get(peer.uid, {})
        if peer not in peers or peer in self._parked.get(peer.uid, ()):
            return False
        self._finished.setdefault(peer.uid, {})[peer] = None
        return True

    def has_room(self, uid: int) -> bool:
        served = (
            len(self._by_uid.get(uid, ()))
            - len(self._parked.get(uid, ()))
            - len(self._finished.get(uid, ()))
        )
        return served < self.per_uid

    def touch(self, peer: P) -> None:
        """Mark `peer` as the most recently active of its uid."""
        peers = self._by_uid.get(peer.uid)
        if peers is not None and peer in peers:
            del peers[peer]
            peers[peer] = None

    def parked_count(self, uid: int) -> int:
        return len(self._parked.get(uid, ()))

    def uid_count(self, uid: int) -> int:
        return len(self._by_uid.get(uid, ()))

    def idle_served(self, uid: int) -> P | None:
        """The least recently active served connection of `uid` that has been
        idle SHED_AFTER_IDLE and is owed no reply: it gives way to a parked one."""
        parked = self._parked.get(uid, {})
        now = self.clock()
        for n, peer in enumerate(self._by_uid.get(uid, ())):
            if n >= SHED_SCAN or now - peer.active_at < SHED_AFTER_IDLE:
                return None
            if peer not in parked and not peer.busy():
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
