"""Every problem and build count in the database, against what the stored records add up to.

`stored_counts` reads the tables; `record_counts` folds every stored record
afresh with the database's skip list. Both key problems by signature, so a
database whose counts are exact gives two equal values.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from telemd.collector.problems import rollups, skip_frames
from telemd.collector.store.base import Store


def crash_payload(function: str, crashes: int = 1) -> str:
    return (
        f"Process: /usr/bin/prog\nPID: 7\nSignal: 11\nName: prog\nCrashes: {crashes}\n\n"
        "Backtrace (TID 7):\n#0 raise() - [libc.so.6] +0x10\n"
        f"#1 {function}() - [libfoo.so.1] +0x30\n#2 helper_{function}() - [libfoo.so.1] +0x38\n"
        "#3 main() - [/usr/bin/prog] +0x40\n"
    )


def stored_counts(store: Store) -> dict[str, Any]:
    with store.reading() as session:
        sig = {int(i): str(s) for i, s in session.fetch("SELECT id, signature FROM problems")}

        def keyed(sql: str) -> dict[tuple[str, Any], int]:
            return {(sig[int(p)], k): int(n) for p, k, n in session.fetch(sql)}

        return {
            "problems": {
                str(s): (int(o), int(m), int(b))
                for s, o, m, b in session.fetch(
                    "SELECT signature, occurrences, machines, builds FROM problems"
                )
            },
            "first_build": {
                str(s): str(b)
                for s, b in session.fetch("SELECT signature, first_build FROM problems")
            },
            "records": Counter(
                sig[int(p)] for (p,) in session.fetch("SELECT problem_id FROM problem_records")
            ),
            "days": keyed("SELECT problem_id, day, n FROM problem_days"),
            "builds": keyed("SELECT problem_id, build, n FROM problem_builds"),
            "machines": keyed("SELECT problem_id, machine_id, n FROM problem_machines"),
            "build_rows": {
                str(b): tuple(int(v) for v in rest)
                for b, *rest in session.fetch(
                    "SELECT build, records, machines, crashes, problems FROM builds"
                )
            },
            "build_days": {
                (str(b), int(d)): (int(r), int(m))
                for b, d, r, m in session.fetch(
                    "SELECT build, day, records, machines FROM build_days"
                )
            },
            "day_rows": {
                int(d): (int(r), int(m))
                for d, r, m in session.fetch("SELECT day, records, machines FROM days")
            },
            "kind_days": {
                (str(k), int(d)): int(n)
                for k, d, n in session.fetch("SELECT kind, day, records FROM kind_days")
            },
        }


def record_counts(store: Store) -> dict[str, Any]:
    with store.reading() as session:
        rows = session.fetch(
            "SELECT id, record_id, received_at, classification, machine_id, build, payload "
            "FROM records ORDER BY id"
        )
        skip = skip_frames.load(session)
    f = rollups.fold([rollups.Stored(*row) for row in rows], skip)
    problem_machines = Counter(s for s, _ in f.problem_machines)
    problem_builds = Counter(s for s, _ in f.problem_builds)
    first: dict[str, tuple[float, str]] = {}
    by_id = {int(r[0]): r for r in rows}
    for s, record in f.problem_records:
        r = by_id[record]
        if s not in first or r[2] < first[s][0]:
            first[s] = (r[2], str(r[5]))
    return {
        "problems": {
            s: (p.occurrences, problem_machines[s], problem_builds[s])
            for s, p in f.problems.items()
        },
        "first_build": {s: b for s, (_, b) in first.items()},
        "records": Counter(s for s, _ in f.problem_records),
        "days": dict(f.problem_days),
        "builds": dict(f.problem_builds),
        "machines": dict(f.problem_machines),
        "build_rows": {
            b: (
                n,
                sum(1 for bb, _ in f.build_machines if bb == b),
                f.build_crashes[b],
                sum(1 for _, bb in f.problem_builds if bb == b),
            )
            for b, n in f.builds.items()
        },
        "build_days": {
            (b, d): (n, sum(1 for bb, dd, _ in f.build_day_machines if (bb, dd) == (b, d)))
            for (b, d), n in f.build_days.items()
        },
        "day_rows": {
            d: (n, sum(1 for dd, _ in f.day_machines if dd == d)) for d, n in f.days.items()
        },
        "kind_days": dict(f.kind_days),
    }
