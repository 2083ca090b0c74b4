"""The retention purge takes the records it deletes out of the problem and build counts.

On both engines: after a purge every count of records or occurrences equals
what the kept records add up to; a problem, build, day or problem's machine
no kept record has is gone; the machines of a day or build that keeps
records stay as they were (they reported that day); and a writer that knew
a machine key of a build the purge emptied counts it again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from collector_proc import row
from problems_counts import crash_payload, record_counts, stored_counts

from telemd.collector.problems import reprocess as rebuild
from telemd.collector.store.base import Retention, Store, open_engine

NOW = 1_800_000_000.0
DAY = 86400
MACHINES = [f"{i:032x}" for i in range(6)]
COUNT_TABLES = (
    "problems", "problem_days", "problem_builds", "problem_machines", "builds", "build_days",
    "days", "kind_days",
)  # fmt: skip


def without_machine_sets(counts: dict[str, Any]) -> dict[str, Any]:
    """The counts the purge keeps exact: all but the sets of machines per build and day."""
    kept = dict(counts)
    del kept["first_build"]
    kept["build_rows"] = {b: (r, c, p) for b, (r, _, c, p) in counts["build_rows"].items()}
    kept["build_days"] = {k: r for k, (r, _) in counts["build_days"].items()}
    kept["day_rows"] = {d: r for d, (r, _) in counts["day_rows"].items()}
    return kept


def load(store: Store, seed: int, days: int = 4) -> None:
    rng = random.Random(seed)
    for i in range(days * 6):
        rows = [
            row(
                classification=rng.choice(
                    ["org.clearlinux/crash/clr", "org.clearlinux/crash/error"]
                ),
                payload=crash_payload(f"fail_{rng.randrange(5)}", 1 + rng.randrange(4)),
                machine_id=rng.choice(MACHINES),
                build=str(100 + i // 6),
            )
            if rng.random() < 0.7
            else row(
                classification=rng.choice(["org.test/a/x", "org.test/b/y"]),
                machine_id=rng.choice(MACHINES),
                build=str(100 + i // 6),
            )
            for _ in range(rng.randint(5, 15))
        ]
        store.write([rows], NOW + i * DAY / 6 + 17.5)


def no_empty_rows(store: Store) -> None:
    with store.reading() as session:
        for table, column in (
            ("problems", "occurrences"), ("problem_days", "n"), ("problem_builds", "n"),
            ("problem_machines", "n"), ("builds", "records"), ("build_days", "records"),
            ("days", "records"), ("kind_days", "records"),
        ):  # fmt: skip
            assert session.fetch(f"SELECT count(*) FROM {table} WHERE {column} <= 0") == [(0,)]


@pytest.mark.parametrize(
    "retention",
    [
        Retention(days=2),
        Retention(days=2, overrides={"org.clearlinux/crash/error": 0, "org.test/a/x": 1}),
        Retention(days=0, overrides={"org.clearlinux/crash/clr": 3}),
    ],
    ids=["days", "overrides", "override-only"],
)
def test_a_purge_leaves_counts_of_the_kept_records(
    stores: Callable[[], Store], retention: Retention
) -> None:
    store = stores()
    load(store, seed=1)
    before = stored_counts(store)
    assert store.purge(retention, NOW + 4 * DAY + 3600) > 0
    after = stored_counts(store)
    assert without_machine_sets(after) == without_machine_sets(record_counts(store))
    no_empty_rows(store)
    # What stays as it was: first builds, and the machines of days and builds with records.
    assert all(before["first_build"][s] == b for s, b in after["first_build"].items())
    for d, (_, machines) in after["day_rows"].items():
        assert machines == before["day_rows"][d][1]
    for b, (_, machines, _, _) in after["build_rows"].items():
        assert machines == before["build_rows"][b][1]
    assert len(after["problems"]) <= len(before["problems"])


def test_a_purge_of_everything_leaves_no_count(stores: Callable[[], Store]) -> None:
    store = stores()
    load(store, seed=2)
    store.purge(Retention(days=1), NOW + 30 * DAY)
    with store.reading() as session:
        for table in (*COUNT_TABLES, "problem_records", "build_machines", "day_machines"):
            assert session.fetch(f"SELECT count(*) FROM {table}") == [(0,)], table


def test_a_writer_counts_again_the_machine_of_an_emptied_build(
    stores: Callable[[], Store],
) -> None:
    store = stores()
    machine = MACHINES[0]
    store.write([[row(build="7", machine_id=machine)]], NOW)
    store.purge(Retention(days=1), NOW + 2 * DAY)
    # The writer knew (build 7, machine) as stored; the purge deleted it.
    store.write([[row(build="7", machine_id=machine)]], NOW + 2 * DAY)
    assert stored_counts(store)["build_rows"]["7"][:2] == (1, 1)
    assert stored_counts(store) == record_counts(store)


def test_a_purge_during_a_reprocess_counts_each_record_once(
    stores: Callable[[], Store],
) -> None:
    store, tool = stores(), stores()
    load(store, seed=3)

    class Stop(Exception):
        pass

    def stop(progress: rebuild.Progress) -> None:
        raise Stop

    with pytest.raises(Stop):
        rebuild.reprocess(tool, batch=60, progress=stop)
    # Deletes records the reprocess counted and records it has yet to count.
    store.purge(Retention(days=2), NOW + 4 * DAY + 3600)
    rebuild.reprocess(tool, batch=60)
    assert without_machine_sets(stored_counts(tool)) == without_machine_sets(record_counts(tool))
    no_empty_rows(tool)


def test_the_migration_keys_problem_records_by_record(db_url: str) -> None:
    old = Store(open_engine(db_url))
    old.migrate(target=8)  # the migration after it keys problem_records by record
    with old.transaction() as session:
        ids = session.insert([row() for _ in range(3)], NOW)
        for n, record in enumerate(sorted(ids.values())):
            session.execute(
                "INSERT INTO problem_records (problem_id, record) VALUES (?, ?)", (n % 2, record)
            )
    old.close()
    store = Store(open_engine(db_url))
    try:
        store.migrate()
        with store.transaction() as session:
            first = min(ids.values())
            # Keyed by record now: the same record again is no second row.
            session.execute(
                "INSERT INTO problem_records (problem_id, record) VALUES (?, ?) "
                "ON CONFLICT (record) DO NOTHING",
                (5, first),
            )
            rows = session.fetch("SELECT record, problem_id FROM problem_records ORDER BY record")
        assert [(int(r), int(p)) for r, p in rows] == [
            (record, n % 2) for n, record in enumerate(sorted(ids.values()))
        ]
    finally:
        store.close()
