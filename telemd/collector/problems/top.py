"""The problems with the most occurrences over a few days, without summing every problem's days.

`problem_days` has an index on (day, n, problem_id), so each day's largest
counts are an index walk in order. The top of the window is found by
Fagin's threshold rule: read the `depth` largest rows of each day, sum those
candidates' days exactly, and stop once the last of the top holds more than
any problem outside the candidates could: the sum of each day's smallest
count read (a day whose rows were all read adds nothing). Otherwise read
deeper. Few problems dominate a fleet's days, so the walk stops after a few
rows per day whatever the number of records; a window of many equal counts
reads on to the end and costs what the plain sum costs, with the same answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from telemd.collector.store.base import Session

# Rows per day read first, as a multiple of the problems asked for; each round reads 4x deeper.
FIRST_DEPTH = 2
DEEPER = 4
# Past this many rows a day, the plain sum of every problem's days is cheaper.
MAX_DEPTH = 1000
# A walk per day: for a longer window, the sum.
MAX_DAYS = 31


def top_problems(
    session: Session, first_day: int, last_day: int, limit: int
) -> list[tuple[int, int]]:
    """(problem_id, occurrences from first_day to last_day), most first, ties by higher id."""
    days = list(range(first_day, last_day + 1))
    if not days or limit <= 0:
        return []
    if len(days) > MAX_DAYS:
        return _summed(session, first_day, last_day, limit)
    depth = FIRST_DEPTH * limit
    while depth <= MAX_DEPTH:
        per_day = _largest(session, days, depth)
        candidates = sorted({problem for rows in per_day.values() for problem, _ in rows})
        totals = _totals(session, candidates, first_day, last_day)
        ranked = sorted(totals.items(), key=lambda item: (-item[1], -item[0]))[:limit]
        unread = [rows[-1][1] for rows in per_day.values() if len(rows) == depth]
        if not unread or (len(ranked) == limit and ranked[-1][1] > sum(unread)):
            return ranked
        depth *= DEEPER
    return _summed(session, first_day, last_day, limit)


def _largest(session: Session, days: list[int], depth: int) -> dict[int, list[tuple[int, int]]]:
    """Per day, its `depth` rows with the largest counts, largest first."""
    one_day = (
        "SELECT * FROM (SELECT day, problem_id, n FROM problem_days WHERE day = ? "
        "ORDER BY n DESC, problem_id DESC LIMIT ?) AS d{i}"
    )
    sql = " UNION ALL ".join(one_day.format(i=i) for i in range(len(days)))
    params: list[object] = []
    for day in days:
        params += [day, depth]
    per_day: dict[int, list[tuple[int, int]]] = {day: [] for day in days}
    for day, problem, n in session.fetch(sql, params):
        per_day[int(day)].append((int(problem), int(n)))
    for rows in per_day.values():
        rows.sort(key=lambda row: (-row[1], -row[0]))
    return per_day


def _summed(session: Session, first_day: int, last_day: int, limit: int) -> list[tuple[int, int]]:
    rows = session.fetch(
        "SELECT problem_id, CAST(sum(n) AS BIGINT) AS total FROM problem_days "
        "WHERE day >= ? AND day <= ? GROUP BY problem_id "
        "ORDER BY total DESC, problem_id DESC LIMIT ?",
        (first_day, last_day, limit),
    )
    return [(int(problem), int(n)) for problem, n in rows]


def _totals(session: Session, problems: list[int], first_day: int, last_day: int) -> dict[int, int]:
    if not problems:
        return {}
    marks = ", ".join("?" * len(problems))
    rows = session.fetch(
        "SELECT problem_id, CAST(sum(n) AS BIGINT) FROM problem_days "
        f"WHERE problem_id IN ({marks}) AND day >= ? AND day <= ? GROUP BY problem_id",
        (*problems, first_day, last_day),
    )
    return {int(problem): int(n) for problem, n in rows}
