"""Reads of problems, builds and the overview, answered from the counts kept at ingest.

No query here reads the records table beyond a handful of rows by key
(a problem's representative and recent records), so each costs the same at
a thousand records and at ten million. The JSON shapes are the ones
docs/man/telemd-collector.8.rst documents.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telemd.collector.ingest.records import FieldError
from telemd.collector.problems.rollups import day_of
from telemd.collector.problems.signature import ProblemKind
from telemd.collector.problems.top import top_problems
from telemd.collector.server import params
from telemd.collector.store.query import SELECT_COLUMNS, record_json
from telemd.collector.store.rollups import DAY

if TYPE_CHECKING:
    from telemd.collector.store.base import Store

SORTS = ("occurrences", "machines", "last_seen")
PROBLEM_COLUMNS = (
    "id", "kind", "signature", "title", "first_seen", "last_seen", "occurrences", "machines",
    "builds", "first_build",
)  # fmt: skip
DETAIL_DAYS = 90
DETAIL_MACHINES = 100
RECENT_RECORDS = 10
OVERVIEW_DAYS = 30
TOP_DAYS = 7
TOP_PROBLEMS = 10
NEW_PROBLEMS = 50


@dataclass(frozen=True, slots=True)
class ProblemQuery:
    kind: str | None = None
    build: str | None = None
    since: float | None = None
    sort: str = "occurrences"
    limit: int = 50
    # The last row of the previous page: (its sort value, its id).
    after: tuple[float, int] | None = None


MAX_LIMIT = 1000
MAX_ID = 2**63 - 1
# `next` of a page: the last row's sort value and id (`42:7`, `1765190000.5:7`).
_CURSOR = re.compile(r"([0-9]{1,19}(?:\.[0-9]{1,17})?(?:e\+?[0-9]{1,3})?):([0-9]{1,19})")
KINDS = tuple(kind.value for kind in ProblemKind)


def parse_problem_query(values: dict[str, str]) -> ProblemQuery:
    """The list's parameters, checked; a FieldError names the one at fault."""
    kind = values.get("kind")
    if kind is not None and kind not in KINDS:
        raise FieldError("kind", f"must be one of {', '.join(KINDS)}, got {kind[:40]!r}")
    sort = values.get("sort", "occurrences")
    if sort not in SORTS:
        raise FieldError("sort", f"must be one of {', '.join(SORTS)}, got {sort[:40]!r}")
    since = params.unix_time("since", values["since"]) if "since" in values else None
    limit = params.integer("limit", values["limit"], 1, MAX_LIMIT) if "limit" in values else 50
    after = None
    if "after" in values:
        match = _CURSOR.fullmatch(values["after"])
        if match is None or int(match.group(2)) > MAX_ID or float(match.group(1)) > 2**63:
            raise FieldError("after", "must be the `next` of the previous page, as VALUE:ID")
        after = (float(match.group(1)), int(match.group(2)))
    return ProblemQuery(kind, values.get("build"), since, sort, limit, after)


def problem_id(text: str) -> int | None:
    return (
        int(text)
        if text.isascii() and text.isdigit() and len(text) <= 19 and 0 < int(text) <= MAX_ID
        else None
    )


def problem_json(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(PROBLEM_COLUMNS, row, strict=True))


def day_text(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY))


def list_problems(store: Store, query: ProblemQuery) -> dict[str, Any]:
    """A page of problems, highest `sort` first; `next` continues after its last."""
    order = query.sort if query.sort in SORTS else "occurrences"
    where: list[str] = []
    params: list[object] = []
    if query.kind is not None:
        where.append("kind = ?")
        params.append(query.kind)
    if query.since is not None:
        where.append("last_seen >= ?")
        params.append(query.since)
    if query.build is not None:
        where.append("id IN (SELECT problem_id FROM problem_builds WHERE build = ?)")
        params.append(query.build)
    if query.after is not None:
        value, last_id = query.after
        where.append(f"({order} < ? OR ({order} = ? AND id < ?))")
        params += [value, value, last_id]
    sql = f"SELECT {', '.join(PROBLEM_COLUMNS)} FROM problems"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY {order} DESC, id DESC LIMIT ?"
    with store.reading() as session:
        rows = session.fetch(sql, (*params, query.limit))
    problems = [problem_json(row) for row in rows]
    more = None
    if len(problems) == query.limit:
        last = problems[-1]
        more = f"{last[order]!r}:{last['id']}"
    return {"problems": problems, "next": more}


def problem_detail(store: Store, problem_id: int) -> dict[str, Any] | None:
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT {', '.join(PROBLEM_COLUMNS)}, record_id FROM problems WHERE id = ?",
            (problem_id,),
        )
        if not rows:
            return None
        problem = problem_json(rows[0][:-1])
        representative = session.fetch(
            "SELECT classification, payload FROM records WHERE record_id = ?", (rows[0][-1],)
        )
        days = session.fetch(
            "SELECT day, n FROM problem_days WHERE problem_id = ? ORDER BY day DESC LIMIT ?",
            (problem_id, DETAIL_DAYS),
        )
        builds = session.fetch(
            "SELECT build, n FROM problem_builds WHERE problem_id = ? ORDER BY n DESC, build",
            (problem_id,),
        )
        machines = session.fetch(
            "SELECT machine_id, n, last_seen FROM problem_machines WHERE problem_id = ? "
            "ORDER BY n DESC, machine_id LIMIT ?",
            (problem_id, DETAIL_MACHINES),
        )
        recent = session.fetch(
            f"SELECT {', '.join('r.' + c for c in SELECT_COLUMNS)} FROM problem_records p "
            "JOIN records r ON r.id = p.record WHERE p.problem_id = ? "
            "ORDER BY p.record DESC LIMIT ?",
            (problem_id, RECENT_RECORDS),
        )
    problem["record_id"] = rows[0][-1]
    problem["classification"] = representative[0][0] if representative else None
    # The representative record may have gone with retention; its counts stay.
    problem["backtrace"] = representative[0][1] if representative else None
    return {
        "problem": problem,
        "days": [{"day": day_text(d), "occurrences": n} for d, n in reversed(days)],
        "builds": [{"build": b, "occurrences": n} for b, n in builds],
        "machines": [{"machine_id": m, "occurrences": n, "last_seen": s} for m, n, s in machines],
        "recent": [record_json(row) for row in recent],
    }


def list_builds(store: Store, limit: int, now: float) -> dict[str, Any]:
    today = day_of(now)
    with store.reading() as session:
        rows = session.fetch(
            "SELECT build, first_seen, last_seen, machines, records, problems, crashes "
            "FROM builds ORDER BY first_seen DESC, build LIMIT ?",
            (limit,),
        )
        daily = session.fetch(
            "SELECT build, day, machines FROM build_days WHERE day > ? ORDER BY build, day",
            (today - TOP_DAYS,),
        )
    per_day: dict[str, list[dict[str, Any]]] = {}
    for build, day, machines in daily:
        per_day.setdefault(build, []).append({"day": day_text(day), "machines": machines})
    builds = []
    for build, first, last, machines, records, problems, crashes in rows:
        builds.append(
            {
                "build": build,
                "first_seen": first,
                "last_seen": last,
                "machines": machines,
                "records": records,
                "problems": problems,
                "crashes": crashes,
                "crashes_per_1000_machines": round(crashes * 1000 / machines, 1)
                if machines
                else 0.0,
                "machines_per_day": per_day.get(build, []),
            }
        )
    return {"builds": builds}


def overview(store: Store, now: float) -> dict[str, Any]:
    today = day_of(now)
    first_day = today - OVERVIEW_DAYS + 1
    columns = ", ".join("p." + c for c in PROBLEM_COLUMNS)
    with store.reading() as session:
        days = session.fetch("SELECT day, machines FROM days WHERE day >= ?", (first_day,))
        kinds = session.fetch(
            "SELECT day, kind, records FROM kind_days WHERE day >= ?", (first_day,)
        )
        ranked = top_problems(session, today - TOP_DAYS + 1, today, TOP_PROBLEMS)
        found: dict[int, tuple[Any, ...]] = {}
        if ranked:
            marks = ", ".join("?" * len(ranked))
            for row in session.fetch(
                f"SELECT {columns} FROM problems p WHERE p.id IN ({marks})",
                [problem for problem, _ in ranked],
            ):
                found[int(row[0])] = row
        latest = session.fetch("SELECT build FROM builds ORDER BY first_seen DESC, build LIMIT 1")
        new: list[tuple[Any, ...]] = []
        if latest:
            new = session.fetch(
                f"SELECT {', '.join(PROBLEM_COLUMNS)} FROM problems WHERE first_build = ? "
                "ORDER BY occurrences DESC, id DESC LIMIT ?",
                (latest[0][0], NEW_PROBLEMS),
            )
    machines = dict(days)
    records: dict[int, dict[str, int]] = {}
    for day, kind, n in kinds:
        records.setdefault(day, {})[kind] = n
    return {
        "days": [
            {
                "day": day_text(day),
                "machines": machines.get(day, 0),
                "records": records.get(day, {}),
            }
            for day in range(first_day, today + 1)
        ],
        "top_problems": [
            {**problem_json(found[problem]), "recent_occurrences": n}
            for problem, n in ranked
            if problem in found
        ],
        "latest_build": latest[0][0] if latest else None,
        "new_in_latest_build": [problem_json(row) for row in new],
    }
