"""Per-uid intake budget: one local user cannot flood the spool for everyone.

A token bucket per uid, `per_minute` tokens deep, refilled continuously.
Pure arithmetic with an injected clock: no I/O, no sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

# Buckets that have refilled completely are forgotten once this many exist,
# so a parade of uids cannot grow the table without bound.
_PRUNE_AT = 1024


class UidBudget:
    def __init__(self, per_minute: int | None, clock: Callable[[], float]) -> None:
        """`per_minute=None` means no limit."""
        self._clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # uid -> (tokens, last refill)
        self.per_minute = per_minute

    def allow(self, uid: int) -> bool:
        """Spend one token of `uid`'s budget; False when none is left."""
        capacity = self.per_minute
        if capacity is None:
            return True
        now = self._clock()
        tokens, last = self._buckets.get(uid, (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - last) * capacity / 60.0)
        if tokens < 1.0:
            self._buckets[uid] = (tokens, now)
            return False
        if len(self._buckets) >= _PRUNE_AT and uid not in self._buckets:
            self._prune(now, capacity)
        self._buckets[uid] = (tokens - 1.0, now)
        return True

    def _prune(self, now: float, capacity: int) -> None:
        full = [
            uid
            for uid, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * capacity / 60.0 >= capacity
        ]
        for uid in full:
            del self._buckets[uid]
