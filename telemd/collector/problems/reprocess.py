"""`telemd-collector reprocess`: every stored record's signature again, every count rebuilt.

Run after the skip list changed, or after an upgrade that reads payloads
better. One transaction: readers see the old counts until the new ones are
whole, and a failure leaves the old ones. A problem keeps its id when its
signature survives, so links to it still work; one no record has any more
is deleted. Counts of records that retention already removed are lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telemd.collector.problems import rollups, skip_frames

if TYPE_CHECKING:
    from telemd.collector.store.base import Store

ROLLUP_TABLES = (
    "problem_records",
    "problem_days",
    "problem_builds",
    "problem_machines",
    "builds",
    "build_machines",
    "build_days",
    "build_day_machines",
    "days",
    "day_machines",
    "kind_days",
)
RECORDS_PER_STEP = 5000
# Later than any received_at: the first record folded in sets first_seen.
_NEVER = 1e300


def reprocess(store: Store) -> tuple[int, int]:
    """Rebuild; return (records read, problems there are now)."""
    records = 0
    with store.transaction() as session:
        for table in ROLLUP_TABLES:
            session.execute(f"DELETE FROM {table}")
        session.execute("UPDATE rollup_epoch SET epoch = epoch + 1")
        session.execute(
            "UPDATE problems SET occurrences = 0, machines = 0, builds = 0, first_seen = ?, "
            "last_seen = 0, record_id = '', first_build = ''",
            (_NEVER,),
        )
        skip = skip_frames.load(session)
        last = 0
        while True:
            rows = session.fetch(
                "SELECT id, record_id, received_at, classification, machine_id, build, payload "
                "FROM records WHERE id > ? ORDER BY id LIMIT ?",
                (last, RECORDS_PER_STEP),
            )
            if not rows:
                break
            stored = [rollups.Stored(*row) for row in rows]
            rollups.apply(session, rollups.fold(stored, skip))
            records += len(rows)
            last = rows[-1][0]
        session.execute("DELETE FROM problems WHERE occurrences = 0")
        (problems,) = session.fetch("SELECT count(*) FROM problems")[0]
    return records, int(problems)
