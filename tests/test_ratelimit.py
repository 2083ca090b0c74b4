"""Clear's delivery rate limits on an injected clock."""

from __future__ import annotations

from telemd.daemon.ratelimit import RateLimiter, SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_window_admits_up_to_its_limit_then_frees_as_time_passes() -> None:
    clock = Clock()
    window = SlidingWindow(3, 60.0, clock)
    for _ in range(3):
        assert window.allows(1)
        window.spend(1)
    assert not window.allows(1)
    assert window.free_at(1) == 160.0
    clock.now = 159.9
    assert not window.allows(1)
    clock.now = 160.0
    assert window.allows(1)
    assert window.used == 0  # all three were spent at the same moment


def test_free_at_finds_when_enough_has_expired() -> None:
    clock = Clock()
    window = SlidingWindow(1000, 60.0, clock)
    for size in (400, 300, 300):
        window.spend(size)
        clock.now += 10
    assert window.free_at(500) == 100.0 + 10 + 60  # the first two must expire


def test_a_single_amount_over_the_limit_passes_alone() -> None:
    clock = Clock()
    window = SlidingWindow(100, 60.0, clock)
    assert window.allows(500)
    window.spend(500)
    assert not window.allows(1)


def test_amounts_reserved_for_requests_in_flight_count_until_spent() -> None:
    window = SlidingWindow(2, 60.0, Clock())
    assert window.allows(1, reserved=1)
    assert not window.allows(1, reserved=2)
    assert not window.allows(3, reserved=1)  # "passes alone" needs an empty window
    assert window.used == 0  # a reservation is not spent: a failed request costs nothing


def test_disabled_limits_let_everything_through() -> None:
    clock = Clock()
    limiter = RateLimiter(
        enabled=False, record_limit=1, record_window=60, byte_limit=1, byte_window=60, clock=clock
    )
    for _ in range(100):
        assert limiter.allows(10, 10_000)
        limiter.spend(10, 10_000)


def test_bytes_and_records_both_bind() -> None:
    clock = Clock()
    limiter = RateLimiter(
        enabled=True,
        record_limit=10,
        record_window=60,
        byte_limit=1000,
        byte_window=120,
        clock=clock,
    )
    limiter.spend(1, 900)
    assert not limiter.allows(1, 200)  # the byte window is full
    assert limiter.allows(1, 100)
    assert limiter.free_at(1, 200) == 100.0 + 120
    limiter.spend(9, 0)
    assert not limiter.allows(1, 1)  # the record window is full


def test_left_says_what_the_windows_still_allow() -> None:
    clock = Clock()
    limiter = RateLimiter(
        enabled=True, record_limit=5, record_window=60, byte_limit=None, byte_window=60, clock=clock
    )
    assert limiter.left() == (5, 1 << 62)
    limiter.spend(3, 100)
    assert limiter.left() == (2, 1 << 62)
    off = RateLimiter(
        enabled=False, record_limit=5, record_window=60, byte_limit=9, byte_window=60, clock=clock
    )
    assert off.left() is None
