"""What the retention purge takes out of the problem and build counts, before it deletes records.

The rule: every count of records or occurrences follows the records kept.
The purge subtracts what the records it deletes added (per problem, per
problem and day, build and machine; per build, build and day, day, kind and
day), and a row whose count reaches 0 goes, with what counted it: a
problem's machine or build no kept record has any more leaves its
`machines` or `builds` (and the build's `problems`), a problem with no
occurrence left is deleted, as `reprocess` would. Sets of machines have no
count per key, so they stay while their day or build has records: a day's
(or build's) machines are the machines that reported that day, and go when
its last record does. First and last seen stay: they are history, not
counts. Writers forget the machine keys they knew when any go
(`rollup_epoch`). While a `reprocess` is under way, the records it has not
counted yet are not subtracted.

Every change is an upsert that adds a negative count, or an update or
delete of a row this transaction has locked, in the writers' table and key
order, so a purge and collectors sharing a PostgreSQL database neither lose
an update nor wait for each other in a circle.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from telemd.collector.problems.reprocess import under_way
from telemd.collector.problems.rollups import day_of
from telemd.collector.problems.signature import (
    CRASH_CLASSIFICATIONS,
    occurrences_of,
    record_kind,
)
from telemd.collector.store.rollups import DAY, ROWS_PER_STATEMENT, bucket_sql, doomed_records

if TYPE_CHECKING:
    from telemd.collector.store.base import Session


def forget(session: Session, engine: str, where: str, params: Sequence[object]) -> None:
    """Before records matching `where` (on `records`) are deleted: take them out of the counts."""
    state = under_way(session)
    if state is not None:
        where = f"({where}) AND NOT (id > ? AND id <= ?)"
        params = (*params, state.done, state.mark)
    day, records = bucket_sql(engine, DAY), doomed_records(engine)
    build_days = session.fetch(
        f"SELECT build, {day} AS day, count(*) FROM {records} WHERE {where} GROUP BY build, day",
        params,
    )
    class_days = session.fetch(
        f"SELECT classification, {day} AS day, count(*) FROM {records} WHERE {where} "
        "GROUP BY classification, day",
        params,
    )
    crash = ", ".join("?" * len(CRASH_CLASSIFICATIONS))
    problem_rows = session.fetch(
        "SELECT p.problem_id, received_at, classification, machine_id, build, "
        f"CASE WHEN classification IN ({crash}) THEN payload ELSE '' END "
        f"FROM records JOIN problem_records p ON p.record = records.id WHERE {where}",
        (*CRASH_CLASSIFICATIONS, *params),
    )
    session.execute(
        f"DELETE FROM problem_records WHERE record IN (SELECT id FROM records WHERE {where})",
        params,
    )
    gone_sets = _forget_builds_and_days(session, build_days, class_days, problem_rows)
    _forget_problems(session, problem_rows)
    if gone_sets:
        session.execute("UPDATE rollup_epoch SET epoch = epoch + 1")


def _forget_builds_and_days(
    session: Session,
    build_days: list[tuple[object, ...]],
    class_days: list[tuple[object, ...]],
    problem_rows: list[tuple[object, ...]],
) -> bool:
    """Subtract per build, build and day, day, kind and day; return whether a set row went."""
    builds: Counter[str] = Counter()
    per_build_day: Counter[tuple[str, int]] = Counter()
    days: Counter[int] = Counter()
    for build, d, n in build_days:
        builds[str(build)] += int(str(n))
        per_build_day[str(build), int(str(d))] += int(str(n))
        days[int(str(d))] += int(str(n))
    crashes: Counter[str] = Counter()
    for _, _, classification, _, build, payload in problem_rows:
        if classification in CRASH_CLASSIFICATIONS:
            crashes[str(build)] += occurrences_of(str(classification), str(payload))
    kinds: Counter[tuple[str, int]] = Counter()
    for classification, d, n in class_days:
        kinds[record_kind(str(classification)), int(str(d))] += int(str(n))
    for build, n in sorted(builds.items()):
        session.execute(
            "UPDATE builds SET records = records - ?, crashes = crashes - ? WHERE build = ?",
            (n, crashes[build], build),
        )
    _subtract(session, "build_days", ("build", "day"), "records", per_build_day, (("machines", 0),))
    _subtract(session, "days", ("day",), "records", days, (("machines", 0),))
    _subtract(session, "kind_days", ("kind", "day"), "records", kinds)
    gone = False
    for build, d in sorted(per_build_day):
        if session.execute(
            "DELETE FROM build_days WHERE build = ? AND day = ? AND records <= 0", (build, d)
        ):
            session.execute(
                "DELETE FROM build_day_machines WHERE build = ? AND day = ?", (build, d)
            )
            gone = True
    for d in sorted(days):
        if session.execute("DELETE FROM days WHERE day = ? AND records <= 0", (d,)):
            session.execute("DELETE FROM day_machines WHERE day = ?", (d,))
            gone = True
    for kind, d in sorted(kinds):
        session.execute(
            "DELETE FROM kind_days WHERE kind = ? AND day = ? AND records <= 0", (kind, d)
        )
    for build in sorted(builds):
        if session.execute("DELETE FROM builds WHERE build = ? AND records <= 0", (build,)):
            session.execute("DELETE FROM build_machines WHERE build = ?", (build,))
            gone = True
    return gone


def _forget_problems(session: Session, problem_rows: list[tuple[object, ...]]) -> None:
    occurrences: Counter[int] = Counter()
    per_day: Counter[tuple[int, int]] = Counter()
    per_build: Counter[tuple[int, str]] = Counter()
    per_machine: Counter[tuple[int, str]] = Counter()
    for problem_id, received_at, classification, machine, build, payload in problem_rows:
        problem = int(str(problem_id))
        n = occurrences_of(str(classification), str(payload))
        occurrences[problem] += n
        per_day[problem, day_of(float(str(received_at)))] += n
        per_build[problem, str(build)] += n
        per_machine[problem, str(machine)] += n
    if not occurrences:
        return
    for problem, n in sorted(occurrences.items()):
        session.execute(
            "UPDATE problems SET occurrences = occurrences - ? WHERE id = ?", (n, problem)
        )
    _subtract(session, "problem_days", ("problem_id", "day"), "n", per_day)
    _subtract(session, "problem_builds", ("problem_id", "build"), "n", per_build)
    _subtract(
        session,
        "problem_machines",
        ("problem_id", "machine_id"),
        "n",
        per_machine,
        (("last_seen", 0.0),),
    )
    _delete_empty(session, "problem_days", ("problem_id", "day"), per_day)
    lost_builds = _delete_empty(session, "problem_builds", ("problem_id", "build"), per_build)
    lost_machines = _delete_empty(
        session, "problem_machines", ("problem_id", "machine_id"), per_machine
    )
    lost: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for problem, _ in lost_builds:
        lost[int(str(problem))][0] += 1
    for problem, _ in lost_machines:
        lost[int(str(problem))][1] += 1
    for problem, (builds, machines) in sorted(lost.items()):
        session.execute(
            "UPDATE problems SET builds = builds - ?, machines = machines - ? WHERE id = ?",
            (builds, machines, problem),
        )
    for build, n in sorted(Counter(str(build) for _, build in lost_builds).items()):
        session.execute("UPDATE builds SET problems = problems - ? WHERE build = ?", (n, build))
    for problem in sorted(occurrences):
        session.execute("DELETE FROM problems WHERE id = ? AND occurrences <= 0", (problem,))


def _subtract(
    session: Session,
    table: str,
    keys: tuple[str, ...],
    column: str,
    counts: Mapping[Any, int],
    filler: tuple[tuple[str, object], ...] = (),
) -> None:
    """Take `counts` away, key by key in sorted order, ROWS_PER_STATEMENT keys a statement.

    An upsert of the negative count, as writers add theirs (a key that is
    missing becomes a row at or below 0, deleted with the others);
    `filler` gives the other columns an inserted row needs.
    """
    columns = (*keys, column, *(name for name, _ in filler))
    rows = sorted(
        (*(key if isinstance(key, tuple) else (key,)), -n, *(value for _, value in filler))
        for key, n in counts.items()
    )
    marks = "(" + ", ".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        session.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * len(chunk))} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
            f"{column} = {table}.{column} + excluded.{column}",
            [value for row in chunk for value in row],
        )


def _delete_empty(
    session: Session, table: str, keys: tuple[str, ...], counts: Mapping[Any, int]
) -> list[tuple[Any, ...]]:
    """Delete the rows of `counts`' keys whose n reached 0; return their keys."""
    marks = "(" + ", ".join("?" * len(keys)) + ")"
    gone: list[tuple[Any, ...]] = []
    ordered = sorted(counts)
    for start in range(0, len(ordered), ROWS_PER_STATEMENT):
        chunk = ordered[start : start + ROWS_PER_STATEMENT]
        gone += session.fetch(
            f"DELETE FROM {table} WHERE n <= 0 AND ({', '.join(keys)}) IN "
            f"(VALUES {', '.join([marks] * len(chunk))}) RETURNING {', '.join(keys)}",
            [value for key in chunk for value in key],
        )
    return gone
