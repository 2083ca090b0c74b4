"""The summary's counts, kept at ingest so that reading them never scans records.

Four tables: records per (classification, severity, hour) with the last
time one was received, per (classification, severity) in all, per (machine,
day), and per machine. The writer adds each
transaction's new records to them in the same transaction; the retention
purge takes away what it deletes. Every change is an upsert that adds
(`n = n + excluded.n`), never a read-modify-write, so several collector
processes on one PostgreSQL database keep exact counts; keys go in sorted
order, so two transactions take their row locks in the same order and
cannot deadlock on them.

A summary `since` a moment answers from whole buckets and reads the records
of the nearer half of the bucket it falls in: added after `since`, or
taken away from its bucket before it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from telemd.collector.store.query import SELECT_COLUMNS

if TYPE_CHECKING:
    from telemd.collector.store.base import Session

HOUR = 3600
DAY = 86400
CLASS_TABLE = "rollup_class_hours"
MACHINE_TABLE = "rollup_machine_days"
MACHINE_TOTAL_TABLE = "rollup_machines"
CLASS_TOTAL_TABLE = "rollup_classes"
# Rows per upsert statement: far below either engine's limit on parameters.
ROWS_PER_STATEMENT = 500
RECENT_SEVERE = 5
SEVERE = (3, 4)
MAX_MACHINES = 1000


def bucket_sql(engine: str, seconds: int) -> str:
    """SQL for received_at's bucket number; CAST rounds on PostgreSQL, truncates on SQLite."""
    if engine == "sqlite":
        return f"CAST(received_at / {seconds} AS INTEGER)"
    return f"CAST(floor(received_at / {seconds}) AS BIGINT)"


def _greatest(engine: str) -> str:
    return "max" if engine == "sqlite" else "greatest"


def migration(engine: str) -> tuple[str, ...]:
    """The tables, filled from the records already stored."""
    return (
        f"""CREATE TABLE {CLASS_TABLE} (
            classification TEXT NOT NULL,
            severity INTEGER NOT NULL,
            hour BIGINT NOT NULL,
            n BIGINT NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (classification, severity, hour)
        )""",
        f"""CREATE TABLE {MACHINE_TABLE} (
            machine_id TEXT NOT NULL,
            day BIGINT NOT NULL,
            n BIGINT NOT NULL,
            PRIMARY KEY (machine_id, day)
        )""",
        f"""CREATE TABLE {MACHINE_TOTAL_TABLE} (
            machine_id TEXT PRIMARY KEY,
            n BIGINT NOT NULL
        )""",
        # Covering: a summary since a day reads this index alone.
        f"CREATE INDEX {MACHINE_TABLE}_day ON {MACHINE_TABLE} (day, machine_id, n)",
        f"CREATE INDEX {CLASS_TABLE}_hour ON {CLASS_TABLE} (hour)",
        f"INSERT INTO {CLASS_TABLE} (classification, severity, hour, n, last_seen) "
        f"SELECT classification, severity, {bucket_sql(engine, HOUR)}, count(*), max(received_at) "
        f"FROM records GROUP BY classification, severity, {bucket_sql(engine, HOUR)}",
        f"INSERT INTO {MACHINE_TABLE} (machine_id, day, n) "
        f"SELECT machine_id, {bucket_sql(engine, DAY)}, count(*) "
        f"FROM records GROUP BY machine_id, {bucket_sql(engine, DAY)}",
        f"INSERT INTO {MACHINE_TOTAL_TABLE} (machine_id, n) "
        "SELECT machine_id, count(*) FROM records GROUP BY machine_id",
    )


# Migration 13: the summary of every record read 68 x 720 hour rows at
# 10,000,000 records over 30 days (8.7 ms), where totals are a row per
# (classification, severity).
CLASS_TOTALS_MIGRATION = (
    f"""CREATE TABLE {CLASS_TOTAL_TABLE} (
        classification TEXT NOT NULL,
        severity INTEGER NOT NULL,
        n BIGINT NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (classification, severity)
    )""",
    f"INSERT INTO {CLASS_TOTAL_TABLE} (classification, severity, n, last_seen) "
    f"SELECT classification, severity, sum(n), max(last_seen) FROM {CLASS_TABLE} "
    "GROUP BY classification, severity",
)

Statement = tuple[str, Sequence[object]]


def _upsert(
    engine: str,
    head: str,
    types: Sequence[str],
    conflict: str,
    rows: Sequence[tuple[object, ...]],
) -> list[Statement]:
    """INSERT `rows` ... ON CONFLICT: PostgreSQL takes them as arrays, in one statement."""
    if engine != "sqlite":
        arrays = ", ".join(f"%b::{kind}[]" for kind in types)  # binary: no quoting of text
        return [
            (
                f"{head} SELECT * FROM unnest({arrays}) {conflict}",
                [list(column) for column in zip(*rows, strict=True)],
            )
        ]
    marks = "(" + ", ".join("?" * len(types)) + ")"
    statements: list[Statement] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        params = [value for row in chunk for value in row]
        statements.append((f"{head} VALUES {', '.join([marks] * len(chunk))} {conflict}", params))
    return statements


# A write's new records per (classification, severity, machine_id, build).
Tally = Mapping[tuple[str, int, str, str], int]


def additions(engine: str, tally: Tally, received_at: float) -> list[Statement]:
    """The upserts that count a write's new records, received at `received_at`."""
    classes: Counter[tuple[str, int]] = Counter()
    machines: Counter[str] = Counter()
    for (classification, severity, machine, _), n in tally.items():
        classes[classification, int(severity)] += n
        machines[machine] += n
    hour, day = int(received_at // HOUR), int(received_at // DAY)
    return count_statements(
        engine,
        [(c, s, hour, n, received_at) for (c, s), n in classes.items()],
        [(m, day, n) for m, n in machines.items()],
    )


def count_statements(
    engine: str,
    class_rows: list[tuple[str, int, int, int, float]],
    machine_rows: list[tuple[str, int, int]],
) -> list[Statement]:
    """Upserts of (classification, severity, hour, n, last_seen) and (machine_id, day, n) deltas.

    The deltas also go to the totals per (classification, severity) and per machine.
    """
    statements: list[Statement] = []
    if class_rows:
        last_seen = f"last_seen = {_greatest(engine)}(r.last_seen, excluded.last_seen)"
        statements += _upsert(
            engine,
            f"INSERT INTO {CLASS_TABLE} AS r (classification, severity, hour, n, last_seen)",
            ("text", "integer", "bigint", "bigint", "double precision"),
            "ON CONFLICT (classification, severity, hour) DO UPDATE SET n = r.n + excluded.n, "
            + last_seen,
            sorted(class_rows),
        )
        class_totals: dict[tuple[str, int], tuple[int, float]] = {}
        for classification, severity, _, n, last in class_rows:
            total, latest = class_totals.get((classification, severity), (0, last))
            class_totals[classification, severity] = (total + n, max(latest, last))
        statements += _upsert(
            engine,
            f"INSERT INTO {CLASS_TOTAL_TABLE} AS r (classification, severity, n, last_seen)",
            ("text", "integer", "bigint", "double precision"),
            "ON CONFLICT (classification, severity) DO UPDATE SET n = r.n + excluded.n, "
            + last_seen,
            sorted((c, s, n, last) for (c, s), (n, last) in class_totals.items()),
        )
    if machine_rows:
        statements += _upsert(
            engine,
            f"INSERT INTO {MACHINE_TABLE} AS r (machine_id, day, n)",
            ("text", "bigint", "bigint"),
            "ON CONFLICT (machine_id, day) DO UPDATE SET n = r.n + excluded.n",
            sorted(machine_rows),
        )
        totals: Counter[str] = Counter()
        for machine, _, n in machine_rows:
            totals[machine] += n
        statements += _upsert(
            engine,
            f"INSERT INTO {MACHINE_TOTAL_TABLE} AS r (machine_id, n)",
            ("text", "bigint"),
            "ON CONFLICT (machine_id) DO UPDATE SET n = r.n + excluded.n",
            sorted(totals.items()),
        )
    return statements


def doomed_records(engine: str) -> str:
    """The records table for a purge's `received_at < ?` with GROUP BY.

    Without statistics SQLite walks a whole index that yields the groups in
    order rather than the range of old records: every record, per purge.
    """
    return "records INDEXED BY records_received" if engine == "sqlite" else "records"


def forget(session: Session, engine: str, where: str, params: Sequence[object]) -> None:
    """Before records matching `where` (a range of received_at) are deleted: take them out."""
    records = doomed_records(engine)
    class_rows = session.fetch(
        f"SELECT classification, severity, {bucket_sql(engine, HOUR)} AS hour, count(*), "
        f"max(received_at) FROM {records} WHERE {where} GROUP BY classification, severity, hour",
        params,
    )
    machine_rows = session.fetch(
        f"SELECT machine_id, {bucket_sql(engine, DAY)} AS day, count(*) FROM {records} "
        f"WHERE {where} GROUP BY machine_id, day",
        params,
    )
    session.run_all(
        count_statements(
            engine,
            [(c, int(s), int(h), -int(n), float(last)) for c, s, h, n, last in class_rows],
            [(m, int(d), -int(n)) for m, d, n in machine_rows],
        )
    )
    session.execute(f"DELETE FROM {CLASS_TABLE} WHERE n <= 0")
    session.execute(f"DELETE FROM {CLASS_TOTAL_TABLE} WHERE n <= 0")
    session.execute(f"DELETE FROM {MACHINE_TABLE} WHERE n <= 0")
    session.execute(f"DELETE FROM {MACHINE_TOTAL_TABLE} WHERE n <= 0")


class _Edge(NamedTuple):
    """How a summary `since` a moment meets the buckets: whole ones from `first`, then
    the records from `low` to `high` added (`sign` "") or taken away (`sign` "-")."""

    first: int
    low: float
    high: float
    sign: str


def _edge(since: float, size: int) -> _Edge:
    """The nearer end of the bucket `since` falls in: at most half a bucket of records to read.

    Nearer its start, the bucket counts whole and the records before `since`
    are taken away; nearer its end, the records after `since` are added.
    """
    bucket = math.floor(since / size)
    start, end = float(bucket * size), float((bucket + 1) * size)
    if since - start <= end - since:
        return _Edge(bucket, start, since, "-")
    return _Edge(bucket + 1, since, end, "")


def class_counts(session: Session, since: float | None) -> list[tuple[Any, ...]]:
    """(classification, severity, count, last received_at) per classification and severity."""
    if since is None:
        return session.fetch(
            f"SELECT classification, severity, n, last_seen FROM {CLASS_TOTAL_TABLE}"
        )
    edge = _edge(since, HOUR)
    # Records taken away are older than any kept: they bring no last_seen.
    last = "max(received_at)" if edge.sign == "" else "NULL"
    return session.fetch(
        "SELECT classification, severity, sum(n), max(last_seen) FROM ("
        f"SELECT classification, severity, n, last_seen FROM {CLASS_TABLE} WHERE hour >= ? "
        f"UNION ALL SELECT classification, severity, {edge.sign}count(*), {last} FROM records "
        "WHERE received_at >= ? AND received_at < ? GROUP BY classification, severity"
        ") AS parts GROUP BY classification, severity HAVING sum(n) > 0",
        (edge.first, edge.low, edge.high),
    )


def severity_counts(session: Session) -> list[tuple[Any, ...]]:
    """(severity, count) of every record stored."""
    return session.fetch(f"SELECT severity, sum(n) FROM {CLASS_TOTAL_TABLE} GROUP BY severity")


def machine_counts(session: Session, since: float | None) -> list[tuple[Any, ...]]:
    """(machine_id, count), the MAX_MACHINES largest first."""
    if since is None:
        return session.fetch(
            f"SELECT machine_id, n FROM {MACHINE_TOTAL_TABLE} ORDER BY n DESC, machine_id LIMIT ?",
            (MAX_MACHINES,),
        )
    edge = _edge(since, DAY)
    return session.fetch(
        "SELECT machine_id, sum(n) AS total FROM ("
        f"SELECT machine_id, n FROM {MACHINE_TABLE} WHERE day >= ? "
        f"UNION ALL SELECT machine_id, {edge.sign}count(*) FROM records "
        "WHERE received_at >= ? AND received_at < ? GROUP BY machine_id"
        ") AS parts GROUP BY machine_id HAVING sum(n) > 0 "
        "ORDER BY total DESC, machine_id LIMIT ?",
        (edge.first, edge.low, edge.high, MAX_MACHINES),
    )


def recent_severe(
    session: Session, counts: Iterable[Sequence[Any]], since: float | None
) -> list[tuple[Any, ...]]:
    """Per classification, its RECENT_SEVERE newest records of severity >= 3, newest first.

    `counts` are class_counts' rows for the same `since`: one index walk per
    severe (classification, severity) that has records, each asking for no
    more rows than the rollups say there are, so that it stops as soon as it
    has them rather than walking on through older records.
    """
    columns = ", ".join(SELECT_COLUMNS)
    cond, extra = ("AND received_at >= ?", (since,)) if since is not None else ("", ())
    by_class: dict[str, list[tuple[Any, ...]]] = {}
    for classification, severity, n, _ in sorted(counts, key=lambda row: (row[0], row[1])):
        if int(severity) < min(SEVERE) or not n:
            continue
        by_class.setdefault(classification, []).extend(
            session.fetch(
                f"SELECT {columns} FROM records WHERE classification = ? AND severity = ? "
                f"{cond} ORDER BY id DESC LIMIT ?",
                (classification, int(severity), *extra, min(RECENT_SEVERE, int(n))),
            )
        )
    found = [
        row
        for rows in by_class.values()
        for row in sorted(rows, key=lambda row: row[0], reverse=True)[:RECENT_SEVERE]
    ]
    return sorted(found, key=lambda row: row[0], reverse=True)
