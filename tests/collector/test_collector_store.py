"""telemd.collector.store.base on SQLite and on PostgreSQL: schema, writes, retention."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from collector_proc import CLEAR_TID, row

from telemd.collector.ingest import records as ingest
from telemd.collector.store.base import (
    SCHEMA_TABLE,
    SCHEMA_VERSION,
    Retention,
    StorageError,
    Store,
    open_engine,
)
from telemd.collector.store.query import SELECT_COLUMNS, RecordQuery
from telemd.errors import ConfigError

RULES = ingest.Rules(frozenset({CLEAR_TID}), 32768)
NOW = 1_800_000_000.0
DAY = 86400


def column(name: str, rows: list[tuple[Any, ...]]) -> list[Any]:
    return [r[SELECT_COLUMNS.index(name)] for r in rows]


def test_migrations_apply_once(store: Store, db_url: str) -> None:
    again = Store(open_engine(db_url))
    assert again.migrate() == SCHEMA_VERSION
    with again._reader() as session:
        assert session.fetch(f"SELECT count(*) FROM {SCHEMA_TABLE}")[0][0] == SCHEMA_VERSION
    again.close()


def start_together(db_url: str, collectors: int = 4) -> list[BaseException]:
    """Open and migrate `collectors` stores on `db_url` at once; what they raised."""
    stores = [Store(open_engine(db_url)) for _ in range(collectors)]
    errors: list[BaseException] = []

    def migrate(s: Store) -> None:
        try:
            s.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    return errors


def test_concurrent_starts_migrate_once(db_url: str) -> None:
    assert start_together(db_url) == []


def test_collectors_starting_together_on_a_new_sqlite_file_all_start(tmp_path: Path) -> None:
    # The switch to WAL races on a new file: about one start in fifteen
    # failed before the switch waited for its turn, so try many new files.
    for attempt in range(60):
        assert start_together(f"sqlite:///{tmp_path}/fresh-{attempt}.db") == [], attempt


def test_a_newer_schema_is_refused(store: Store, db_url: str) -> None:
    session = store._write_session()
    session.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="newer"):
        Store(open_engine(db_url)).migrate()


def test_write_reports_new_ids_and_skips_known_record_ids(store: Store) -> None:
    a, b, c = row(), row(), row()
    (first,) = store.write([[a, b]], NOW)
    assert set(first) == {a[0], b[0]}
    second, third = store.write([[b, c], [c]], NOW)
    assert set(second) == {c[0]} and third == {}
    rows = store.records(RecordQuery(machine_id=str(a[5]), limit=10))
    assert sorted(column("id", rows)) == sorted([*first.values(), *second.values()])


def test_ids_stay_right_after_the_newest_rows_were_purged(store: Store) -> None:
    old = row(classification="org.test/ids/old")
    store.write([[row()]], NOW)
    store.write([[old]], NOW - 10 * DAY)
    assert store.purge(Retention(0, {"org.test/ids/old": 1}), NOW) == 1
    fresh = [row(), row()]
    (ids,) = store.write([fresh], NOW)
    by_record = dict(
        zip(
            column("record_id", store.records(RecordQuery())),
            column("id", store.records(RecordQuery())),
            strict=True,
        )
    )
    assert ids == {str(r[0]): by_record[str(r[0])] for r in fresh}


def test_retention_with_per_classification_overrides(store: Store) -> None:
    keep = "org.test/keep/forever"
    short = "org.test/short/lived"
    store.write([[row(classification=keep), row(classification=short), row()]], NOW - 10 * DAY)
    store.write([[row(classification=short), row()]], NOW - 2 * DAY)
    deleted = store.purge(Retention(5, {keep: 0, short: 1}), NOW)
    assert deleted == 3
    left = store.records(RecordQuery())
    assert sorted(column("classification", left)) == sorted([keep, "org.clearlinux/hello/world"])


def test_no_retention_keeps_everything(store: Store) -> None:
    store.write([[row()]], NOW - 1000 * DAY)
    assert store.purge(Retention(), NOW) == 0


def test_filters_and_since(store: Store) -> None:
    store.write([[row(severity="4", build="7"), row(severity="1")]], NOW - 3600)
    store.write([[row(severity="4")]], NOW)
    assert len(store.records(RecordQuery(severity=4))) == 2
    assert len(store.records(RecordQuery(build="7"))) == 1
    assert len(store.records(RecordQuery(since=NOW - 60))) == 1
    newest, *_ = store.records(RecordQuery(limit=1))
    assert len(store.records(RecordQuery(before=newest[0]))) == 2


def test_summary_since(store: Store) -> None:
    store.write([[row(severity="3")]], NOW - 3600)
    store.write([[row(severity="2")]], NOW)
    report = store.summary(NOW - 60)
    (entry,) = report["classifications"]
    assert entry["total"] == 1 and entry["by_severity"] == {"2": 1}
    assert entry["recent_severe"] == []
    assert store.summary()["classifications"][0]["total"] == 2


def test_unreachable_database_is_a_storage_error(tmp_path: Any) -> None:
    (tmp_path / "file").write_text("")
    store = Store(open_engine(f"sqlite:///{tmp_path}/file/x.db"))  # a file is no directory
    with pytest.raises(StorageError):
        store.migrate()
    store = Store(open_engine("postgresql://nobody@127.0.0.1:1/none"))
    with pytest.raises(StorageError):
        store.ping()


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:///", "sqlite:///:memory:", "x"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        open_engine(url)


def test_sqlite_creates_the_database_directory(tmp_path: Any) -> None:
    store = Store(open_engine(f"sqlite:///{tmp_path}/new/dir/collector.db"))
    assert store.migrate() == SCHEMA_VERSION
    store.close()
    assert (tmp_path / "new" / "dir" / "collector.db").is_file()


def test_postgresql_sessions_plan_no_parallel_workers(
    new_db_url: Callable[[str], str],
) -> None:
    """Starting workers costs more than the collector's reads: a page of a time range
    at 10,000,000 records took 80 ms with them and 2 ms without."""
    store = Store(open_engine(new_db_url("postgresql")))
    try:
        store.migrate()
        for session_of in (store.reading, store.transaction):
            with session_of() as session:
                assert session.fetch("SHOW max_parallel_workers_per_gather") == [("0",)]
    finally:
        store.close()
