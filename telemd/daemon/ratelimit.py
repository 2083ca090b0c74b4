"""Clear's delivery rate limits, counted correctly. Pure: an injected clock, no I/O.

Two sliding windows: at most `record_burst_limit` records per
`record_window_length`, and at most `byte_burst_limit` bytes per
`byte_window_length`, where the bytes are those actually posted (Clear's
daemon counted 4 bytes per record). A limit of None is off.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class SlidingWindow:
    """Amounts spent in the last `length` seconds, against a `limit`."""

    def __init__(self, limit: int | None, length: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.length = length
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        spent = self._spent
        while spent and spent[0][0] <= now - self.length:
            self._total -= spent.popleft()[1]

    def allows(self, amount: int, reserved: int = 0) -> bool:
        """Whether `amount` fits beside what is spent and `reserved` (not yet spent)."""
        if self.limit is None:
            return True
        self._expire(self._clock())
        taken = self._total + reserved
        # An amount larger than the whole limit passes alone in an empty
        # window; otherwise it could never be sent at all.
        return taken + amount <= self.limit or taken == 0

    def spend(self, amount: int) -> None:
        if self.limit is None:
            return
        self._spent.append((self._clock(), amount))
        self._total += amount

    def free_at(self, amount: int) -> float:
        """The earliest time at which `amount` will be allowed."""
        if self.allows(amount):
            return self._clock()
        assert self.limit is not None
        needed = self._total + amount - self.limit
        for stamp, spent in self._spent:
            needed -= spent
            if needed <= 0:
                return stamp + self.length
        return self._spent[-1][0] + self.length

    def left(self) -> int | None:
        """What the window still allows now; None when there is no limit."""
        if self.limit is None:
            return None
        return max(0, self.limit - self.used)

    @property
    def used(self) -> int:
        self._expire(self._clock())
        return self._total


class RateLimiter:
    """Both of Clear's windows; `enabled=False` lets everything through."""

    def __init__(
        self,
        *,
        enabled: bool,
        record_limit: int | None,
        record_window: float,
        byte_limit: int | None,
        byte_window: float,
        clock: Callable[[], float],
    ) -> None:
        self.records = SlidingWindow(record_limit if enabled else None, record_window, clock)
        self.bytes = SlidingWindow(byte_limit if enabled else None, byte_window, clock)

    def allows(self, records: int, size: int, reserved: tuple[int, int] = (0, 0)) -> bool:
        return self.records.allows(records, reserved[0]) and self.bytes.allows(size, reserved[1])

    def spend(self, records: int, size: int) -> None:
        self.records.spend(records)
        self.bytes.spend(size)

    def free_at(self, records: int, size: int) -> float:
        return max(self.records.free_at(records), self.bytes.free_at(size))

    def left(self) -> tuple[int, int] | None:
        """(records, bytes) the windows still allow, or None when neither limits."""
        records, size = self.records.left(), self.bytes.left()
        if records is None and size is None:
            return None
        big = 1 << 62
        return (big if records is None else records, big if size is None else size)
