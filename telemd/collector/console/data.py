"""The console's reads: what each page shows, asked of the store in a few queries.

Blocking, like the store: the routes call these from worker threads. Days are
UTC days counted from the epoch; the clock is passed in (`now`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from telemd.collector.store.base import Store

DAY = 86400
OVERVIEW_DAYS = 30
TOP_DAYS = 7
# More kinds than this in one chart are lumped into "other": colours run out.
MAX_SERIES = 6
MAX_ROWS = 50
# The day of a record: whole seconds divided by a day. Integer division in
# both engines; the cast rounds on PostgreSQL, which moves at most the last
# half second of a day to the next.
DAY_OF = "CAST(received_at AS BIGINT) / 86400"
# Crash records, as the crash probe and Clear's probes classify them.
CRASH_PATTERN = "%/crash/%"


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, timezone.utc).strftime("%m-%d")


def day_range(now: float, days: int) -> list[int]:
    today = int(now) // DAY
    return list(range(today - days + 1, today + 1))


@dataclass
class DailySeries:
    """Counts per day for each named series, days oldest first."""

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


def _lumped(rows: list[tuple[Any, ...]], days: list[int]) -> DailySeries:
    """(day, name, count) rows into series, the largest MAX_SERIES - 1 kept by name."""
    totals: dict[str, int] = defaultdict(int)
    for _, name, count in rows:
        totals[str(name)] += int(count)
    ranked = sorted(totals, key=lambda n: (-totals[n], n))
    kept = set(ranked if len(ranked) <= MAX_SERIES else ranked[: MAX_SERIES - 1])
    result = DailySeries(days)
    for name in ranked:
        if name in kept:
            result.series[name] = [0] * len(days)
    for day, name, count in rows:
        result.add(str(name) if str(name) in kept else "other", int(day), int(count))
    return result


def records_per_day(
    store: Store, now: float, days: int, machine_id: str | None = None
) -> DailySeries:
    span = day_range(now, days)
    where = "received_at >= ?"
    params: list[object] = [span[0] * DAY]
    if machine_id is not None:
        where += " AND machine_id = ?"
        params.append(machine_id)
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT {DAY_OF} AS day, classification, count(*) FROM records "
            f"WHERE {where} GROUP BY day, classification",
            params,
        )
    return _lumped(rows, span)


def machines_per_day(store: Store, now: float, days: int) -> DailySeries:
    span = day_range(now, days)
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT {DAY_OF} AS day, count(DISTINCT machine_id) FROM records "
            "WHERE received_at >= ? GROUP BY day",
            (span[0] * DAY,),
        )
    result = DailySeries(span, {"machines": [0] * len(span)})
    for day, count in rows:
        result.add("machines", int(day), int(count))
    return result


@dataclass(frozen=True, slots=True)
class KindRow:
    """A classification's severe records over a span: the console's problem rows."""

    classification: str
    records: int
    machines: int
    last_seen: float
    per_day: list[int]


def severe_kinds(store: Store, now: float, days: int, limit: int = MAX_ROWS) -> list[KindRow]:
    """Classifications with records of severity 3 or more, most records first."""
    span = day_range(now, days)
    since = span[0] * DAY
    with store.reading() as session:
        kinds = session.fetch(
            "SELECT classification, count(*) AS n, count(DISTINCT machine_id), "
            "max(received_at) FROM records WHERE severity >= 3 AND received_at >= ? "
            "GROUP BY classification ORDER BY n DESC, classification LIMIT ?",
            (since, limit),
        )
        daily = session.fetch(
            f"SELECT {DAY_OF} AS day, classification, count(*) FROM records "
            "WHERE severity >= 3 AND received_at >= ? GROUP BY day, classification",
            (since,),
        )
    per_day = DailySeries(span)
    for day, name, count in daily:
        per_day.add(str(name), int(day), int(count))
    return [
        KindRow(
            str(name),
            int(n),
            int(machines),
            float(last),
            per_day.series.get(str(name), [0] * len(span)),
        )
        for name, n, machines, last in kinds
    ]


@dataclass(frozen=True, slots=True)
class BuildRow:
    build: str
    machines: int
    records: int
    severe: int
    crashes: int

    @property
    def crashes_per_1000(self) -> float:
        return round(1000 * self.crashes / self.machines, 1) if self.machines else 0.0

    @property
    def severe_per_1000(self) -> float:
        return round(1000 * self.severe / self.machines, 1) if self.machines else 0.0


def builds(store: Store, now: float, days: int, limit: int = MAX_ROWS) -> list[BuildRow]:
    """Per build over the last `days`: machines, records, severe records, crashes."""
    since = day_range(now, days)[0] * DAY
    with store.reading() as session:
        rows = session.fetch(
            "SELECT build, count(DISTINCT machine_id), count(*), "
            "sum(CASE WHEN severity >= 3 THEN 1 ELSE 0 END), "
            "sum(CASE WHEN classification LIKE ? THEN 1 ELSE 0 END) "
            "FROM records WHERE received_at >= ? GROUP BY build "
            "ORDER BY count(DISTINCT machine_id) DESC, build LIMIT ?",
            (CRASH_PATTERN, since, limit),
        )
    return [BuildRow(str(b), int(m), int(r), int(s or 0), int(c or 0)) for b, m, r, s, c in rows]


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
