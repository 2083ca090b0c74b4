"""Which refusals intake journals: the first of a uid and reason at once, the rest
counted into one entry per window, with a bounded number of pairs tracked."""

from __future__ import annotations

from telemd.daemon.refused import Refusal, RefusalTally


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_from_one_uid_costs_two_entries_a_window() -> None:
    clock = Clock()
    tally = RefusalTally(window=60, clock=clock)
    first = tally.add(1000, "invalid severity", "a/b/c", "severity: must be in 1..4")
    assert first == Refusal(1000, "invalid severity", "a/b/c", "severity: must be in 1..4", 1)
    held = [tally.add(1000, "invalid severity", f"a/b/{n}", f"bad {n}") for n in range(10_000)]
    assert held == [None] * 10_000
    assert tally.next_due() == 60
    clock.now = 59.9
    assert tally.due() == []
    clock.now = 60
    assert tally.due() == [Refusal(1000, "invalid severity", "a/b/9999", "bad 9999", 10_000)]
    assert tally.next_due() is None
    # A quiet window later, the next refusal is journaled at once again.
    assert tally.add(1000, "invalid severity", "a/b/c", "again") is not None


def test_each_uid_and_reason_has_its_own_window() -> None:
    tally = RefusalTally(clock=Clock())
    assert tally.add(1000, "invalid severity", "a/b/c", "x") is not None
    assert tally.add(1001, "invalid severity", "a/b/c", "x") is not None
    assert tally.add(1000, "throttled", "a/b/c", "x") is not None
    assert tally.add(1000, "throttled", "a/b/c", "x") is None


def test_past_max_keys_new_pairs_are_counted_together() -> None:
    clock = Clock()
    tally = RefusalTally(window=60, max_keys=4, clock=clock)
    entries = [tally.add(uid, "invalid frame", "", "x") for uid in range(1000)]
    journaled = [entry for entry in entries if entry is not None]
    # Four uids of their own, then one entry for "several uids"; nothing unseen.
    assert [entry.uid for entry in journaled] == [0, 1, 2, 3, None]
    clock.now = 60
    [summary] = tally.due()
    assert (summary.uid, summary.count) == (None, 1000 - 5)
    # Windows that ended with nothing held make room again.
    assert tally.add(5000, "invalid frame", "", "x") == Refusal(5000, "invalid frame", "", "x", 1)


def test_flush_gives_what_is_held_at_shutdown() -> None:
    tally = RefusalTally(clock=Clock())
    tally.add(7, "spool-full", "a/b/c", "full")
    tally.add(7, "spool-full", "a/b/c", "full")
    tally.add(8, "spool-full", "a/b/c", "full")
    assert tally.flush() == [Refusal(7, "spool-full", "a/b/c", "full", 1)]
    assert tally.flush() == []
