"""New records enter the full-text index once each, however the writer groups them."""

from __future__ import annotations

from collector_proc import row

from telemd.collector.store.base import Retention, Store, open_engine
from telemd.collector.store.query import SELECT_COLUMNS, RecordQuery

NOW = 1_800_000_000.0
BEFORE_BATCH_INDEX = 7  # the last schema whose index was kept by a row trigger


def found(store: Store, q: str) -> list[str]:
    rows = store.records(RecordQuery(q=q))
    return sorted(r[SELECT_COLUMNS.index("payload")] for r in rows)


def check_index(store: Store) -> None:
    """SQLite's index holds exactly the stored records' words (FTS5 says malformed if not)."""
    if store.engine.name == "sqlite":
        with store.transaction() as session:
            session.execute(
                "INSERT INTO records_fts (records_fts, rank) VALUES ('integrity-check', 1)"
            )


def test_a_group_with_duplicates_indexes_each_new_record_once(store: Store) -> None:
    first = row(payload="needle first")
    store.write([[first]], NOW)
    second, third = row(payload="needle second"), row(payload="needle third")
    # One transaction: a batch with an old and a new record, a batch of new
    # ones, a batch of nothing new, an empty batch.
    stored = store.write([[first, second], [third], [first], []], NOW + 1)
    assert [len(ids) for ids in stored] == [1, 1, 0, 0]
    check_index(store)
    assert found(store, "needle") == ["needle first", "needle second", "needle third"]


def test_a_write_of_only_duplicates_indexes_nothing(store: Store) -> None:
    records = [row(payload=f"hay {i}") for i in range(3)]
    store.write([records], NOW)
    assert store.write([records[::-1]], NOW + 1) == [{}]
    check_index(store)
    assert len(found(store, "hay")) == 3


def test_an_index_kept_by_the_old_trigger_carries_on(db_url: str) -> None:
    old = Store(open_engine(db_url))
    old.migrate(BEFORE_BATCH_INDEX)
    with old.transaction() as session:  # the insert as the writer of that schema ran it
        session.insert([row(payload="needle before the upgrade")], NOW - 10 * 86400)
    old.close()
    store = Store(open_engine(db_url))
    try:
        store.migrate()
        store.write([[row(payload="needle after the upgrade")]], NOW)
        check_index(store)
        assert found(store, "needle") == ["needle after the upgrade", "needle before the upgrade"]
        assert store.purge(Retention(days=5), NOW) == 1
        check_index(store)
        assert found(store, "needle") == ["needle after the upgrade"]
    finally:
        store.close()
