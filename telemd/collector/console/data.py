"""The console's reads beyond the problems' API: what its charts need, in a few queries.

The overview, problems and builds come from `telemd.collector.problems.queries`
(counts kept at ingest); this module turns them into chart series and adds
what those do not hold: per-day counts of the problems on a page, and one
machine's records and problems. Blocking, like the store: the routes call
these from worker threads. Days are UTC days since the epoch; the clock is
passed in (`now`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemd.collector.problems.queries import PROBLEM_COLUMNS, problem_json
from telemd.collector.problems.rollups import day_of
from telemd.collector.store.base import Store
from telemd.collector.store.rollups import DAY

SPARK_DAYS = 30
MACHINE_DAYS = 30
# More kinds than this in one chart are lumped into "other": colours run out.
MAX_SERIES = 6
MAX_ROWS = 50
# The day of a record: whole seconds divided by a day. Integer division in
# both engines; the cast rounds on PostgreSQL, which moves at most the last
# half second of a day to the next.
DAY_OF = "CAST(received_at AS BIGINT) / 86400"


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, timezone.utc).strftime("%m-%d")


def day_range(now: float, days: int) -> list[int]:
    today = day_of(now)
    return list(range(today - days + 1, today + 1))


@dataclass
class DailySeries:
    """Counts per day for each named series, days oldest first and consecutive."""

    days: list[int]
    series: dict[str, list[int]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return [day_label(day) for day in self.days]

    def add(self, name: str, day: int, count: int) -> None:
        position = day - self.days[0]
        if 0 <= position < len(self.days):
            values = self.series.setdefault(name, [0] * len(self.days))
            values[position] += count


def lumped(rows: Sequence[tuple[int, str, int]], days: list[int]) -> DailySeries:
    """(day, name, count) rows into series; beyond MAX_SERIES, the smallest become "other"."""
    totals: dict[str, int] = defaultdict(int)
    for _, name, count in rows:
        totals[name] += count
    ranked = sorted(totals, key=lambda n: (-totals[n], n))
    kept = set(ranked if len(ranked) <= MAX_SERIES else ranked[: MAX_SERIES - 1])
    result = DailySeries(days, {name: [0] * len(days) for name in ranked if name in kept})
    for day, name, count in rows:
        result.add(name if name in kept else "other", day, count)
    return result


def overview_series(overview: Mapping[str, Any], now: float) -> tuple[DailySeries, DailySeries]:
    """The overview's days as (records per day by kind, active machines per day)."""
    days = day_range(now, len(overview["days"]))
    rows = [
        (day, kind, int(n))
        for day, entry in zip(days, overview["days"], strict=True)
        for kind, n in entry["records"].items()
    ]
    machines = DailySeries(days, {"machines": [int(e["machines"]) for e in overview["days"]]})
    return lumped(rows, days), machines


def problem_days(
    store: Store, ids: Sequence[int], now: float, days: int = SPARK_DAYS
) -> dict[int, list[int]]:
    """Occurrences per day of each listed problem, for its sparkline."""
    span = day_range(now, days)
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT problem_id, day, n FROM problem_days WHERE problem_id IN ({marks}) "
            "AND day >= ?",
            (*ids, span[0]),
        )
    series = DailySeries(span, {str(i): [0] * len(span) for i in ids})
    for problem_id, day, n in rows:
        series.add(str(problem_id), int(day), int(n))
    return {int(name): values for name, values in series.series.items()}


def detail_series(detail: Mapping[str, Any], now: float, days: int = 90) -> DailySeries:
    """A problem's occurrences per day (its detail lists the days that had any)."""
    span = day_range(now, days)
    series = DailySeries(span, {"occurrences": [0] * len(span)})
    for entry in detail["days"]:
        moment = datetime.strptime(entry["day"], "%Y-%m-%d").replace(tzinfo=timezone.utc)
        series.add("occurrences", day_of(moment.timestamp()), int(entry["occurrences"]))
    return series


def machine_records_per_day(store: Store, machine_id: str, now: float) -> DailySeries:
    span = day_range(now, MACHINE_DAYS)
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT {DAY_OF} AS day, classification, count(*) FROM records "
            "WHERE machine_id = ? AND received_at >= ? GROUP BY day, classification",
            (machine_id, span[0] * DAY),
        )
    return lumped([(int(d), str(c), int(n)) for d, c, n in rows], span)


@dataclass(frozen=True, slots=True)
class MachineKind:
    classification: str
    records: int
    first_seen: float
    last_seen: float


def machine_kinds(store: Store, machine_id: str, limit: int = MAX_ROWS) -> list[MachineKind]:
    """A machine's classifications, most records first."""
    with store.reading() as session:
        rows = session.fetch(
            "SELECT classification, count(*) AS n, min(received_at), max(received_at) "
            "FROM records WHERE machine_id = ? GROUP BY classification "
            "ORDER BY n DESC, classification LIMIT ?",
            (machine_id, limit),
        )
    return [MachineKind(str(c), int(n), float(a), float(b)) for c, n, a, b in rows]


def machine_problems(store: Store, machine_id: str, limit: int = MAX_ROWS) -> list[dict[str, Any]]:
    """The problems a machine had, its own occurrences first."""
    columns = ", ".join("p." + c for c in PROBLEM_COLUMNS)
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT {columns}, m.n, m.last_seen FROM problem_machines m "
            "JOIN problems p ON p.id = m.problem_id WHERE m.machine_id = ? "
            "ORDER BY m.n DESC, p.id DESC LIMIT ?",
            (machine_id, limit),
        )
    return [
        {**problem_json(row[:-2]), "here": int(row[-2]), "here_last_seen": float(row[-1])}
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class AppTotals:
    """One event source's app (a Vrooli scenario, shuttle, any app): its counts."""

    source: str
    app: str
    events: int
    failures: int
    last_time: float


def app_totals(store: Store, failures: Collection[str], limit: int = MAX_ROWS) -> list[AppTotals]:
    """Per source and app, events and failure events, from the counts kept at insert."""
    names = sorted(failures)
    failed = (
        f"sum(CASE WHEN event IN ({', '.join('?' * len(names))}) THEN total ELSE 0 END)"
        if names
        else "0"
    )
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT source, app, sum(total) AS n, {failed}, max(last_time) FROM event_counts "
            "GROUP BY source, app ORDER BY n DESC, source, app LIMIT ?",
            (*names, limit),
        )
    return [AppTotals(str(s), str(a), int(n), int(f or 0), float(t)) for s, a, n, f, t in rows]
