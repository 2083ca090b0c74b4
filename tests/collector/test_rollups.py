"""The summary's rollups on both engines: exact against a scan, purged, backfilled.

The migration test also checks the full-text index is built from stored records."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from collector_proc import CLEAR_TID, row

from telemd.collector.ingest import records as ingest
from telemd.collector.store.base import Retention, Store, open_engine
from telemd.collector.store.query import RecordQuery

RULES = ingest.Rules(frozenset({CLEAR_TID}), 32768)
NOW = 1_800_000_000.0
HOUR = 3600


def scanned(store: Store, since: float | None) -> tuple[Counter[tuple[str, int]], Counter[str]]:
    """The counts the summary must give, by a full scan of the records."""
    cond, params = ("WHERE received_at >= ?", (since,)) if since is not None else ("", ())
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT classification, severity, machine_id FROM records {cond}", params
        )
    return Counter((c, int(s)) for c, s, _ in rows), Counter(m for _, _, m in rows)


def summarised(store: Store, since: float | None) -> tuple[Counter[tuple[str, int]], Counter[str]]:
    report = store.summary(since)
    classes: Counter[tuple[str, int]] = Counter()
    for entry in report["classifications"]:
        assert entry["total"] == sum(entry["by_severity"].values())
        for severity, n in entry["by_severity"].items():
            classes[(entry["classification"], int(severity))] = n
    assert all(m["count"] > 0 for m in report["machines"])  # no machine with nothing since
    assert all(n > 0 for n in classes.values())
    return classes, Counter({m["machine_id"]: m["count"] for m in report["machines"]})


def load(store: Store, seed: int, batches: int = 40) -> None:
    """Records over three days, at times that fall inside hours and days."""
    rng = random.Random(seed)
    machines = [f"{i:032x}" for i in range(7)]
    for n in range(batches):
        rows = [
            row(
                classification=f"org.test/c{rng.randrange(4)}/x",
                severity=str(rng.randint(1, 4)),
                machine_id=rng.choice(machines),
            )
            for _ in range(rng.randint(1, 30))
        ]
        store.write([rows], NOW + n * 1811.5)


def test_summary_counts_equal_a_scan_at_any_since(store: Store) -> None:
    load(store, seed=1)
    # Moments near the start and near the end of their hour and of their day.
    for since in (
        None, NOW, NOW + 1, NOW + HOUR, NOW + 5 * HOUR + 17.25, NOW + 3 * HOUR + 3500.5,
        NOW + 40000.5, NOW + 100000, NOW + 86400 + 3, 4e9,
    ):  # fmt: skip
        assert summarised(store, since) == scanned(store, since), since


def test_duplicates_are_not_counted(store: Store) -> None:
    rows = [row(), row()]
    store.write([rows, rows[:1]], NOW)
    store.write([rows], NOW + 1)
    assert summarised(store, None) == scanned(store, None)
    assert sum(summarised(store, None)[1].values()) == 2


def test_summary_shows_the_newest_severe_records(store: Store) -> None:
    for i in range(8):
        store.write([[row(classification="org.test/sev/x", severity=str(3 + i % 2))]], NOW + i)
    store.write([[row(classification="org.test/sev/x", severity="1")]], NOW + 9)
    (entry,) = store.summary()["classifications"]
    ids = [r["id"] for r in entry["recent_severe"]]
    assert len(ids) == 5 and ids == sorted(ids, reverse=True)
    assert {r["severity"] for r in entry["recent_severe"]} == {3, 4}
    assert entry["last_seen"] == "2027-01-15T08:00:09.000Z"


def test_purge_takes_records_out_of_the_rollups(store: Store) -> None:
    load(store, seed=2)
    store.write([[row(classification="org.test/keep/x")]], NOW)
    retention = Retention(days=1, overrides={"org.test/keep/x": 0, "org.test/c1/x": 2})
    assert store.purge(retention, NOW + 2 * 86400 + 7 * HOUR + 12.5) > 0
    for since in (None, NOW + 86400 + 0.5):
        assert summarised(store, since) == scanned(store, since)
    with store.reading() as session:
        for table in ("rollup_class_hours", "rollup_classes"):
            assert session.fetch(f"SELECT count(*) FROM {table} WHERE n <= 0") == [(0,)]


def test_the_migration_fills_the_rollups_from_stored_records(db_url: str) -> None:
    old = Store(open_engine(db_url))
    old.migrate(target=2)
    with old.transaction() as session:
        for n in range(5):
            session.insert([row(severity=str(1 + n % 4)) for _ in range(3)], NOW + n * 1000)
    old.close()
    store = Store(open_engine(db_url))
    store.migrate()
    try:
        assert summarised(store, None) == scanned(store, None)
        assert summarised(store, NOW + 1500) == scanned(store, NOW + 1500)
        assert len(store.records(RecordQuery(q="hello"))) == 15  # full text indexed them too
    finally:
        store.close()


def test_a_summary_since_reads_part_of_a_days_records_from_the_index_alone(
    new_db_url: Callable[[str], str],
) -> None:
    """At 10,000,000 records half a day is 167,000 records: reading each row for its
    machine took 97 ms of the summary's 133; the index alone about 40."""
    store = Store(open_engine(new_db_url("sqlite")))
    store.migrate()
    try:
        load(store, seed=4, batches=3)
        with store.reading() as session:
            plan = session.fetch(
                "EXPLAIN QUERY PLAN SELECT machine_id, count(*) FROM records "
                "WHERE received_at >= ? AND received_at < ? GROUP BY machine_id",
                (NOW, NOW + HOUR),
            )
        assert any("COVERING INDEX records_received" in str(step[-1]) for step in plan), plan
    finally:
        store.close()
