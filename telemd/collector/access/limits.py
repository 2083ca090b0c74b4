"""Per-client token buckets: the arithmetic of rate limits, without I/O.

A bucket holds up to `burst` requests and refills at `rate` a second; a
request that finds it empty is told how long to wait (Retry-After). Buckets
are kept for at most `max_clients` clients: past that, the clients idle
longest are forgotten (a forgotten client starts again with a full bucket),
so a flood of new addresses costs bounded memory and locks nobody out.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_CLIENTS = 10_000


@dataclass(slots=True)
class _Bucket:
    level: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, client: str, cost: float = 1.0) -> float:
        """Spend `cost` from `client`'s bucket: 0.0 if allowed, else seconds to wait."""
        now = self.clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[client] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
            bucket.level = min(self.burst, bucket.level + (now - bucket.updated) * self.rate)
            bucket.updated = now
        if bucket.level >= cost:
            bucket.level -= cost
            return 0.0
        return (cost - bucket.level) / self.rate

    def would_wait(self, client: str) -> float:
        """Seconds until `client` may spend 1 again (0.0 now), without spending."""
        bucket = self._buckets.get(client)
        if bucket is None:
            return 0.0
        level = min(self.burst, bucket.level + (self.clock() - bucket.updated) * self.rate)
        return 0.0 if level >= 1 else (1 - level) / self.rate


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
