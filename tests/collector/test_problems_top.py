"""The overview's top problems of the week, by index walks, equal the plain sum on both engines.

The walk stops early only when no unread problem can reach the top; these
windows are built to tempt it into stopping too early: ties across the
boundary, a problem just below every day's top that wins on its sum, days
with fewer rows than the top, days with none.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from telemd.collector.problems import top
from telemd.collector.store.base import Store

FIRST_DAY = 20000


def summed(store: Store, first: int, last: int, limit: int) -> list[tuple[int, int]]:
    """The answer by summing every problem's days."""
    with store.reading() as session:
        rows = session.fetch("SELECT problem_id, day, n FROM problem_days")
    totals: Counter[int] = Counter()
    for problem, day, n in rows:
        if first <= day <= last:
            totals[int(problem)] += int(n)
    return sorted(totals.items(), key=lambda item: (-item[1], -item[0]))[:limit]


def walked(store: Store, first: int, last: int, limit: int) -> list[tuple[int, int]]:
    with store.reading() as session:
        return top.top_problems(session, first, last, limit)


def fill(store: Store, rows: dict[tuple[int, int], int]) -> None:
    with store.transaction() as session:
        for (problem, day), n in sorted(rows.items()):
            session.execute(
                "INSERT INTO problem_days (problem_id, day, n) VALUES (?, ?, ?)", (problem, day, n)
            )


def zipf_days(rng: random.Random, problems: int, days: int) -> dict[tuple[int, int], int]:
    rows: dict[tuple[int, int], int] = {}
    for day in range(FIRST_DAY, FIRST_DAY + days):
        for _ in range(3000):
            problem = min(int(rng.paretovariate(0.8)), problems)
            rows[problem, day] = rows.get((problem, day), 0) + 1
    return rows


@pytest.mark.parametrize("limit", [1, 3, 10, 40])
def test_the_walk_equals_the_sum_on_a_fleets_days(store: Store, limit: int) -> None:
    fill(store, zipf_days(random.Random(limit), 500, 9))
    for first, last in (
        (FIRST_DAY + 2, FIRST_DAY + 8),
        (FIRST_DAY, FIRST_DAY),
        (FIRST_DAY - 3, FIRST_DAY + 20),
        (0, 10**6),
    ):
        assert walked(store, first, last, limit) == summed(store, first, last, limit)


def test_ties_and_flat_days_give_the_same_order(store: Store) -> None:
    # Every problem once a day, some twice: ties at every depth, broken by id.
    rows = {(p, d): 1 + (p * d) % 2 for p in range(1, 400) for d in range(FIRST_DAY, FIRST_DAY + 7)}
    fill(store, rows)
    for limit in (1, 10, 399, 1000):
        assert walked(store, FIRST_DAY, FIRST_DAY + 6, limit) == summed(
            store, FIRST_DAY, FIRST_DAY + 6, limit
        )


def test_a_problem_second_every_day_wins_the_week(store: Store) -> None:
    # Each day has its own leader (1,000 occurrences, once); problem 7 is
    # second every day with 600, so 4,200 in the week, and nowhere first.
    rows = {(100 + d, FIRST_DAY + d): 1000 for d in range(7)}
    rows.update({(7, FIRST_DAY + d): 600 for d in range(7)})
    rows.update({(200 + p, FIRST_DAY + d): 599 - p for p in range(30) for d in range(7)})
    fill(store, rows)
    answer = walked(store, FIRST_DAY, FIRST_DAY + 6, 1)
    assert answer == [(7, 4200)]
    assert walked(store, FIRST_DAY, FIRST_DAY + 6, 10) == summed(
        store, FIRST_DAY, FIRST_DAY + 6, 10
    )


def test_empty_and_sparse_windows(store: Store) -> None:
    assert walked(store, FIRST_DAY, FIRST_DAY + 6, 10) == []
    fill(store, {(3, FIRST_DAY): 2, (4, FIRST_DAY + 5): 2, (5, FIRST_DAY + 9): 50})
    assert walked(store, FIRST_DAY, FIRST_DAY + 6, 10) == [(4, 2), (3, 2)]
