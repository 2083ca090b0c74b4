"""The per-uid intake budget, on an injected clock."""

from __future__ import annotations

from telemd.daemon.budget import UidBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_uid_over_its_budget_is_refused_while_another_is_not() -> None:
    clock = Clock()
    budget = UidBudget(3, clock)
    assert [budget.allow(1000) for _ in range(4)] == [True, True, True, False]
    assert budget.allow(1001)


def test_the_budget_refills_with_time() -> None:
    clock = Clock()
    budget = UidBudget(60, clock)  # one record a second
    for _ in range(60):
        assert budget.allow(7)
    assert not budget.allow(7)
    clock.now += 0.5
    assert not budget.allow(7)
    clock.now += 0.5
    assert budget.allow(7)
    assert not budget.allow(7)
    clock.now += 3600
    assert sum(budget.allow(7) for _ in range(100)) == 60


def test_no_limit_means_every_record_passes() -> None:
    budget = UidBudget(None, Clock())
    assert all(budget.allow(0) for _ in range(10_000))


def test_many_uids_do_not_grow_the_table_without_bound() -> None:
    clock = Clock()
    budget = UidBudget(10, clock)
    for uid in range(5000):
        budget.allow(uid)
        clock.now += 60  # every earlier bucket has refilled
    assert len(budget._buckets) <= 1025
