"""The connection table: per-uid serving slots, parking, and whom to shed."""

from __future__ import annotations

from dataclasses import dataclass

from telemd.daemon.peers import SHED_AFTER_IDLE, PeerTable, descriptor_room


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class FakePeer:
    uid: int
    active_at: float
    replies: bool = False
    frames: bool = False

    def owes_replies(self) -> bool:
        return self.replies

    def busy(self) -> bool:
        return self.replies or self.frames


def test_at_its_limit_a_uid_gives_way_only_once_idle_long_enough() -> None:
    clock = Clock()
    table: PeerTable[FakePeer] = PeerTable(limit=10, per_uid=3, clock=clock)
    busy = FakePeer(5, clock.now, replies=True)
    unread = FakePeer(5, clock.now, frames=True)
    idle = FakePeer(5, clock.now)
    for peer in (busy, unread, idle):
        table.add(peer)
    table.add(FakePeer(6, clock.now))
    assert table.uid_count(5) == 3 and table.count == 4
    assert table.own_idle(5) is None  # too young: frames may sit unread
    clock.now += SHED_AFTER_IDLE
    assert table.own_idle(5) is idle  # not the one owed replies, nor the one with frames
    table.remove(idle)
    assert table.uid_count(5) == 2 and table.count == 3


def test_at_the_limit_the_heaviest_uid_gives_way_to_a_lighter_one() -> None:
    clock = Clock()
    table: PeerTable[FakePeer] = PeerTable(limit=4, per_uid=10, clock=clock)
    storing = FakePeer(0, clock.now, replies=True)
    unread = FakePeer(0, clock.now, frames=True)
    fresh = FakePeer(0, clock.now)
    other = FakePeer(7, clock.now)
    for peer in (storing, unread, fresh, other):
        table.add(peer)
    assert table.full
    # Uid 0 opening yet another: only its own idle connections, and none is old enough.
    assert table.to_shed(0) is None
    # A lighter uid: the heaviest sheds what it has not had read, never what is stored.
    assert table.to_shed(9) is unread
    storing.replies = False
    assert table.to_shed(9) is storing
    clock.now += SHED_AFTER_IDLE
    assert table.to_shed(0) is storing  # idle long enough now, and owed nothing


def test_descriptor_room_keeps_the_reserve() -> None:
    room = descriptor_room(reserve=100)
    unlimited = descriptor_room(reserve=0)
    assert room is None or (unlimited is not None and room == max(unlimited - 100, 1))
