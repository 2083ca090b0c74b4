"""The rate limiter's arithmetic, on an injected clock."""

from __future__ import annotations

import pytest

from telemd.collector.access.limits import RateLimiter, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=4, clock=clock)
    assert [limiter.take("a") for _ in range(4)] == [0.0] * 4
    assert limiter.take("a") == pytest.approx(0.5)  # one token refills in 1/rate s
    assert limiter.take("b") == 0.0  # clients do not share a bucket
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_refill_stops_at_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=3, clock=clock)
    limiter.take("a")
    clock.now += 3600
    assert [limiter.take("a") for _ in range(4)][-1] > 0


def test_would_wait_does_not_spend() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    assert limiter.would_wait("a") == 0.0
    assert limiter.would_wait("a") == 0.0
    assert limiter.take("a") == 0.0
    assert limiter.would_wait("a") == pytest.approx(1.0)
    clock.now += 0.25
    assert limiter.would_wait("a") == pytest.approx(0.75)


def test_memory_is_bounded_and_forgetting_only_forgives() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock, max_clients=100)
    limiter.take("victim")
    for n in range(10_000):
        limiter.take(f"flood-{n}")
    assert len(limiter._buckets) == 100
    assert limiter.take("victim") == 0.0  # forgotten: a full bucket again


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert retry_after(0.01) == "1"
    assert retry_after(1.0) == "1"
    assert retry_after(1.2) == "2"


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)
